//! The run report's chart: steps done over time, an SVG drawn with `plotters`.

use plotters::prelude::*;

/// Cumulative steps done at each second that saw one (`(seconds since the first, total)`),
/// from per-second counts in time order (`YYYY-MM-DDTHH:MM:SS`).
pub fn cumulative(per_second: &[(String, u64)]) -> Vec<(f64, u64)> {
    let parse = |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok();
    let Some(first) = per_second.first().and_then(|(t, _)| parse(t)) else {
        return Vec::new();
    };
    let mut total = 0;
    per_second
        .iter()
        .filter_map(|(t, n)| {
            total += n;
            parse(t).map(|at| ((at - first).num_milliseconds() as f64 / 1000.0, total))
        })
        .collect()
}

/// The SVG of `points` (seconds, steps done), titled; the last point is also written as the
/// chart's `<desc>` so that tools (and tests) read the total without parsing the drawing.
pub fn steps_svg(title: &str, points: &[(f64, u64)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let x_max = points.last().map(|p| p.0).unwrap_or(0.0).max(1.0);
        let y_max = points.last().map(|p| p.1).unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max * 1.02, 0u64..y_max + y_max / 20 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first step")
            .y_desc("steps done")
            .draw()
            .map_err(|e| e.to_string())?;
        // A step line: the count holds until the next second that saw steps.
        let mut line = Vec::with_capacity(points.len() * 2 + 1);
        line.push((0.0, 0));
        let mut last = 0;
        for &(x, y) in points {
            line.push((x, last));
            line.push((x, y));
            last = y;
        }
        chart
            .draw_series(LineSeries::new(line, &BLUE))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let total = points.last().map(|p| p.1).unwrap_or(0);
    // plotters writes the root element first: the description goes right after it.
    match svg.find('>') {
        Some(i) => svg.insert_str(i + 1, &format!("\n<desc>steps done: {total}</desc>")),
        None => return Err("plotters wrote no SVG element".into()),
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_counts_every_step_and_is_well_formed() {
        let per_second = vec![
            ("2026-11-26T10:00:00".to_string(), 5),
            ("2026-11-26T10:00:03".to_string(), 7),
            ("2026-11-26T10:01:00".to_string(), 1),
        ];
        let points = cumulative(&per_second);
        assert_eq!(points, vec![(0.0, 5), (3.0, 12), (60.0, 13)]);
        let svg = steps_svg("stage canary", &points).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("<desc>steps done: 13</desc>"));
        // Well-formed: every element opened is closed, in order.
        let mut depth = 0i64;
        for t in xmlparser::Tokenizer::from(svg.as_str()) {
            match t.unwrap() {
                xmlparser::Token::ElementStart { .. } => depth += 1,
                xmlparser::Token::ElementEnd { end, .. } => match end {
                    xmlparser::ElementEnd::Open => {}
                    _ => depth -= 1,
                },
                _ => {}
            }
        }
        assert_eq!(depth, 0);
        assert!(steps_svg("empty", &[]).unwrap().contains("steps done: 0"));
    }
}

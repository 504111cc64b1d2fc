//! The command layer: turns arguments into calls of the core and renders the results. The
//! only place that prints command output and maps errors to exit codes.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::apply::{self, ApplyOptions};
use crate::campaign::{self, LoadedCampaign};
use crate::error::RekeyError;
use crate::exit_codes;
use crate::inventory::{self, Record};
use crate::journal::Journal;
use crate::model::{EncryptionClass, Resource, ResourceKind};
use crate::plan::{self, Planner};
use crate::providers::aws::AwsClients;
use crate::providers::gcs::GcsClient;
use crate::report::StderrReporter;
use crate::summary;
use crate::window::WindowSpec;
use std::io::IsTerminal;

const EXIT_CODES_HELP: &str = "Exit codes:
  0    ok
  1    internal error
  2    bad usage, campaign or plan; nothing was written
  3    finished with failed or drifted steps
  4    stale plan: inventory or key aliases changed
  5    stopped at the end of the maintenance window (resumable)
  6    verify found non-compliant resources
  130  interrupted by a signal (resumable)";

#[derive(Parser, Debug)]
#[command(name = "rekey", version, about = "Move an ML estate from service-managed encryption to customer-managed KMS keys.", after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create or update the team keys through KMS: keys, aliases, rotation, policies. Never
    /// deletes or disables a key; refuses to drop statements of an existing policy that are
    /// not rekey's unless --replace-policy. Each write is journaled (JSON lines).
    Apply {
        #[arg(short = 'c', long = "campaign")]
        campaign: PathBuf,
        /// Replace existing policies even where that drops statements rekey did not write.
        #[arg(long)]
        replace_policy: bool,
        /// The journal of KMS writes (default: CAMPAIGN's directory, NAME.keys.journal.jsonl).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long)]
        yes: bool,
    },
}

/// What `rekey keys` writes.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum KeysEmit {
    Terraform,
    Json,
}

/// How `rekey guard` prints its findings.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GuardOutput {
    Text,
    Json,
    /// SARIF 2.1.0, for code-scanning UIs.
    Sarif,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List what the campaign selects and classify its encryption. Read-only.
    Inventory {
        #[arg(short = 'c', long = "campaign")]
        campaign: PathBuf,
        /// Write the inventory as JSON lines to this file (a summary goes to stdout): a header
        /// with the resolved keys and verdicts, then one record per resource; `rekey plan
        /// --from-inventory FILE` plans from it offline.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Plan the migration (a dry run): write the plan and its manifest, print the summary.
    Plan {
        #[arg(short = 'c', long = "campaign")]
        campaign: PathBuf,
        /// Where to write the plan, e.g. plans/NAME.plan.yaml; the manifest goes beside it.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Plan from a saved inventory (`rekey inventory -o FILE`) without reading the cloud:
        /// the campaign may change keys, mapping, stages and limits, not what is selected.
        #[arg(long = "from-inventory", value_name = "FILE")]
        from_inventory: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Print the summary of a saved plan (checks its manifest hash).
    Show {
        plan: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Apply a plan, stage by stage; run it again to resume.
    Apply {
        plan: PathBuf,
        /// Apply only this stage.
        #[arg(long)]
        stage: Option<String>,
        /// Steps in flight at once (default: the plan's).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Requests per second (default: the plan's).
        #[arg(long)]
        requests_per_second: Option<u32>,
        /// Maintenance window: `sat,sun 02:00-06:00 UTC` or `until=2026-11-28T06:00:00Z`
        /// (default: the campaign's, if it set one; `none` lifts it).
        #[arg(long)]
        window: Option<String>,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Start later stages even when a stage ends with failed or drifted steps.
        #[arg(long)]
        continue_on_failure: bool,
        /// Run what batch jobs left (failed tasks, objects no job told) with rekey's own
        /// engine; jobs still running are watched to their end first.
        #[arg(long)]
        retry_failed_locally: bool,
        /// The journal (default: beside the plan, NAME.journal.sqlite).
        #[arg(long)]
        journal: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Progress of a plan, from its journal.
    Status {
        plan: PathBuf,
        #[arg(long)]
        journal: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Undo applied steps in reverse order, back to a checkpoint (default: the first).
    Rollback {
        plan: PathBuf,
        /// The checkpoint (a stage name) to return to.
        #[arg(long = "to")]
        to: Option<String>,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        journal: Option<PathBuf>,
        #[arg(long)]
        concurrency: Option<usize>,
        /// Requests per second (default: the plan's).
        #[arg(long)]
        requests_per_second: Option<u32>,
        /// `json`: progress events as JSON lines on stderr, the outcome as one JSON object on
        /// stdout.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Write an operator runbook for the maintenance window from a plan.
    Runbook {
        plan: PathBuf,
        /// Where to write it (default: stdout), e.g. runbooks/NAME.md.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Check, against the cloud, that everything is on its team key (exit 6 if not).
    Verify {
        /// A plan: checks its bucket defaults and planned objects.
        plan: Option<PathBuf>,
        /// With a plan: check only this stage.
        #[arg(long, requires = "plan")]
        stage: Option<String>,
        /// A campaign: inventories it and checks every matched resource.
        #[arg(short = 'c', long = "campaign", conflicts_with = "plan")]
        campaign: Option<PathBuf>,
        /// Leave blocked and manual resources out (the planned-only view); by default they
        /// count as not compliant: the campaign is not done while they stay where they are.
        #[arg(long)]
        ignore_blocked: bool,
        /// Write every resource not on its team key here, one JSON object per line (the
        /// output lists the first 1,000).
        #[arg(long, value_name = "FILE")]
        findings: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Write the team keys the campaign needs, with their policies, as Terraform or JSON
    /// (docs/keys.md). Read-only: keys that exist are imported, never replaced. `keys apply`
    /// creates or updates them through KMS instead.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Keys {
        #[command(subcommand)]
        action: Option<KeysAction>,
        #[arg(short = 'c', long = "campaign", required = true)]
        campaign: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "terraform")]
        emit: KeysEmit,
        /// A directory for the files (aws-ACCOUNT.tf, gcp-PROJECT.tf, or keys.json); default
        /// stdout.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Check infrastructure code (`terraform show -json` output, CloudFormation templates)
    /// for ML resources not on their team key: exit 6 on findings, 2 on unreadable input.
    Guard {
        #[arg(short = 'c', long = "campaign")]
        campaign: PathBuf,
        /// Terraform JSON plans or states, CloudFormation templates (JSON or YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The campaign account the code deploys to (required when the campaign names
        /// accounts and the code has AWS resources).
        #[arg(long)]
        account: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: GuardOutput,
    },
    /// Print the JSON Schema of a command's `--output json` (docs/schemas/, docs/output.md).
    Schema {
        #[arg(value_enum)]
        command: crate::schema::Command,
    },
    /// Print a shell completion script: `rekey completions bash > /etc/bash_completion.d/rekey`
    /// (zsh: a `_rekey` file on `$fpath`; fish: `~/.config/fish/completions/rekey.fish`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `rekey man > /usr/local/share/man/man1/rekey.1`.
    Man,
}

/// Write the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "rekey", out);
}

/// Write the manual page (roff), with the exit codes.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Parse arguments, run, and return the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let json = matches!(
        &cli.command,
        Command::Inventory {
            output: Output::Json,
            ..
        } | Command::Plan {
            output: Output::Json,
            ..
        } | Command::Show {
            output: Output::Json,
            ..
        } | Command::Apply {
            output: Output::Json,
            ..
        } | Command::Verify {
            output: Output::Json,
            ..
        } | Command::Rollback {
            output: Output::Json,
            ..
        }
    );
    // Apply's JSON events are its output; other commands print their result on stdout.
    let json_to_stdout = matches!(&cli.command, Command::Apply { .. });
    let reporter = StderrReporter::new(json, json_to_stdout);
    // One thread: the work is network-bound, and a single-threaded runtime spends no CPU on
    // waking workers (measured with scripts/bench-apply.sh).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit_codes::INTERNAL;
        }
    };
    let result = runtime.block_on(dispatch(cli.command, &reporter));
    reporter.finish();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn dispatch(command: Command, reporter: &StderrReporter) -> Result<i32, RekeyError> {
    match command {
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout().lock());
            Ok(exit_codes::OK)
        }
        Command::Keys {
            action: None,
            campaign,
            emit,
            out,
        } => {
            let c = campaign::load(campaign.as_deref().unwrap_or(Path::new("")))?;
            run_keys(&c, KeysMode::Emit(emit, out.as_deref()), reporter).await
        }
        Command::Keys {
            action:
                Some(KeysAction::Apply {
                    campaign,
                    replace_policy,
                    journal,
                    yes,
                }),
            ..
        } => {
            let c = campaign::load(&campaign)?;
            let journal = journal.unwrap_or_else(|| {
                campaign.with_file_name(format!("{}.keys.journal.jsonl", c.spec.campaign))
            });
            run_keys(
                &c,
                KeysMode::Apply {
                    replace_policy,
                    journal: &journal,
                    yes,
                },
                reporter,
            )
            .await
        }
        Command::Guard {
            campaign,
            files,
            account,
            output,
        } => {
            let c = campaign::load(&campaign)?;
            run_guard(&c, &files, account.as_deref(), output, reporter).await
        }
        Command::Schema { command } => {
            print!("{}", crate::schema::text(command));
            Ok(exit_codes::OK)
        }
        Command::Man => {
            man_page(&mut std::io::stdout().lock())
                .map_err(|e| RekeyError::io("writing the manual page", e))?;
            Ok(exit_codes::OK)
        }
        Command::Inventory {
            campaign,
            out,
            output,
        } => {
            let c = campaign::load(&campaign)?;
            run_inventory(&c, out.as_deref(), output, reporter).await
        }
        Command::Plan {
            campaign,
            out,
            from_inventory,
            output,
        } => {
            let c = campaign::load(&campaign)?;
            run_plan(&c, &out, from_inventory.as_deref(), output, reporter).await
        }
        Command::Show { plan, output } => {
            let p = plan::load(&plan)?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&p)
                        .map_err(|e| RekeyError::Internal(e.to_string()))?
                ),
                Output::Table => print!("{}", summary::render(&p)),
            }
            Ok(exit_codes::OK)
        }
        Command::Apply {
            plan,
            stage,
            concurrency,
            requests_per_second,
            window,
            yes,
            continue_on_failure,
            retry_failed_locally,
            journal,
            output: _,
        } => {
            let p = plan::load(&plan)?;
            let window = match window {
                // An operator may lift the campaign's window deliberately.
                Some(w) if w == "none" => None,
                Some(w) => {
                    Some(WindowSpec::parse(&w).map_err(|m| RekeyError::usage(m, "fix --window"))?)
                }
                None => p
                    .settings
                    .window
                    .as_ref()
                    .and_then(WindowSpec::from_campaign),
            };
            let concurrency = concurrency.unwrap_or(p.settings.concurrency);
            if concurrency == 0 {
                return Err(RekeyError::usage(
                    "--concurrency 0 would never start a step",
                    "pass 1 or more",
                ));
            }
            confirm(
                yes,
                &format!(
                    "apply {} ({} objects, {} bucket defaults)",
                    plan.display(),
                    p.summary.objects,
                    p.summary.buckets
                ),
            )?;
            let aws = plan_clients(&p).await;
            let opts = ApplyOptions {
                journal: apply::journal_path(&plan, journal.as_deref()),
                stage,
                concurrency,
                requests_per_second: requests_per_second.unwrap_or(p.settings.requests_per_second),
                window,
                continue_on_failure,
                retry_failed_locally,
            };
            let mut interrupts = interrupt_channel();
            let gcs = plan_gcs(&p);
            let code = apply::apply(
                &p,
                &plan,
                &aws,
                gcs.as_ref(),
                &opts,
                reporter,
                &mut interrupts,
            )
            .await?;
            reporter.finish();
            eprintln!(
                "report: {}",
                apply::report_path(&opts.journal, "md").display()
            );
            Ok(code)
        }
        Command::Status {
            plan,
            journal,
            output,
        } => {
            let p = plan::load(&plan)?;
            let path = apply::journal_path(&plan, journal.as_deref());
            if !path.exists() {
                return Err(RekeyError::usage(
                    format!(
                        "no journal at {}: the plan was never applied",
                        path.display()
                    ),
                    "run `rekey apply` first, or pass --journal",
                ));
            }
            let j = Journal::open(&path, &apply::plan_id(&plan)?)?;
            let s = apply::status(&p, &j)?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&s)
                        .map_err(|e| RekeyError::Internal(e.to_string()))?
                ),
                Output::Table => {
                    print!("{}", apply::render_status(&s));
                    let next = apply::next_step(&s, &plan.display().to_string());
                    println!("{next}");
                    if p.settings.batch.is_some() && next.contains("failed or drifted") {
                        println!(
                            "  (a batch job's failed tasks are not retried by another job: `rekey apply {} --retry-failed-locally` runs them with rekey's own engine)",
                            plan.display()
                        );
                    }
                }
            }
            Ok(exit_codes::OK)
        }
        Command::Rollback {
            plan,
            to,
            yes,
            journal,
            concurrency,
            requests_per_second,
            output,
        } => {
            let p = plan::load(&plan)?;
            let path = apply::journal_path(&plan, journal.as_deref());
            if !path.exists() {
                return Err(RekeyError::usage(
                    format!("no journal at {}: nothing was applied", path.display()),
                    "pass --journal if it lives elsewhere",
                ));
            }
            confirm(
                yes,
                &format!(
                    "roll back {} to checkpoint {}",
                    plan.display(),
                    to.as_deref().unwrap_or("(the first)")
                ),
            )?;
            let aws = plan_clients(&p).await;
            let mut interrupts = interrupt_channel();
            let outcome = apply::rollback(
                &p,
                &plan,
                &path,
                &apply::RollbackOptions {
                    to,
                    concurrency: concurrency.unwrap_or(p.settings.concurrency).max(1),
                    requests_per_second: requests_per_second
                        .unwrap_or(p.settings.requests_per_second),
                },
                &aws,
                plan_gcs(&p).as_ref(),
                reporter,
                &mut interrupts,
            )
            .await?;
            reporter.finish();
            let t = outcome.tally;
            let report = apply::report_path(&path, "md");
            let code = match outcome.stop {
                crate::executor::Stop::Interrupted => exit_codes::INTERRUPTED,
                _ if t.conflicts + t.failed > 0 => exit_codes::STEPS_FAILED,
                _ => exit_codes::OK,
            };
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string(&crate::schema::RollbackSummary {
                        undone: t.undone,
                        left_alone: t.conflicts,
                        failed: t.failed,
                        stop: apply::stop_name(outcome.stop).into(),
                        exit_code: code,
                        report: report.display().to_string(),
                    })
                    .map_err(|e| RekeyError::Internal(e.to_string()))?
                ),
                Output::Table => {
                    println!(
                        "rollback: {} steps undone, {} left alone (changed since rekey changed them), {} failed",
                        t.undone, t.conflicts, t.failed
                    );
                    eprintln!("report: {}", report.display());
                }
            }
            Ok(code)
        }
        Command::Runbook { plan, out } => {
            let p = plan::load(&plan)?;
            let text = crate::runbook::render(&p, &plan);
            match out {
                Some(path) => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            RekeyError::io(format!("creating {}", dir.display()), e)
                        })?;
                    }
                    std::fs::write(&path, text)
                        .map_err(|e| RekeyError::io(format!("writing {}", path.display()), e))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(exit_codes::OK)
        }
        Command::Verify {
            plan,
            stage,
            campaign,
            ignore_blocked,
            findings,
            output,
        } => {
            let v = match (plan, campaign) {
                (Some(plan), None) => {
                    let mut p = plan::load(&plan)?;
                    if let Some(s) = &stage {
                        if !p.stages.iter().any(|st| &st.name == s) {
                            return Err(RekeyError::usage(
                                format!("the plan has no stage {s:?}"),
                                "name one of the plan's stages",
                            ));
                        }
                        p.stages.retain(|st| &st.name == s);
                    }
                    let aws = plan_clients(&p).await;
                    apply::verify_plan(
                        &p,
                        &plan,
                        &aws,
                        plan_gcs(&p).as_ref(),
                        &apply::VerifyOptions {
                            concurrency: p.settings.concurrency,
                            requests_per_second: p.settings.requests_per_second,
                            ignore_blocked,
                            findings,
                        },
                    )
                    .await?
                }
                (None, Some(c)) => {
                    let c = campaign::load(&c)?;
                    verify_campaign(&c, reporter, findings.as_deref()).await?
                }
                _ => {
                    return Err(RekeyError::usage(
                        "verify needs a plan or -c CAMPAIGN",
                        "pass one of them",
                    ))
                }
            };
            reporter.finish();
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&v)
                        .map_err(|e| RekeyError::Internal(e.to_string()))?
                ),
                Output::Table => print!("{}", apply::render_verification(&v)),
            }
            Ok(if v.not_compliant == 0 {
                exit_codes::OK
            } else {
                exit_codes::NON_COMPLIANT
            })
        }
    }
}

/// Ask before a cloud write, unless --yes; refuse without a terminal to ask on.
fn confirm(yes: bool, what: &str) -> Result<(), RekeyError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(RekeyError::usage(
            format!("refusing to {what} without confirmation"),
            "pass --yes (stdin is not a terminal to ask on)",
        ));
    }
    eprint!("About to {what}. Type yes to go on: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| RekeyError::io("reading the answer", e))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(RekeyError::usage(
            "not confirmed: nothing was changed",
            "answer `yes`, or pass --yes",
        ))
    }
}

/// First interrupt (SIGINT or SIGTERM): stop dispatching; second: abandon in-flight work.
fn interrupt_channel() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Every account a campaign reaches, with its clients: (name, account id when named, clients).
type CampaignAccounts = Vec<(String, Option<String>, AwsClients)>;

/// The caller's own account, or each `aws.accounts` entry reached by AssumeRole.
async fn account_clients(
    region: &str,
    endpoint: Option<&str>,
    accounts: &[crate::campaign::AwsAccount],
    max_attempts: u32,
) -> CampaignAccounts {
    if accounts.is_empty() {
        let c = AwsClients::with_retries(region, endpoint, max_attempts).await;
        return vec![(inventory::DEFAULT_ACCOUNT.to_string(), None, c)];
    }
    let mut out = Vec::new();
    for a in accounts {
        let id = a.role_arn.split(':').nth(4).map(str::to_string);
        let c = AwsClients::assume(region, endpoint, max_attempts, &a.role_arn).await;
        out.push((a.name.clone(), id, c));
    }
    out
}

/// Clients for applying a plan: its region, endpoint and accounts, SDK retries off (rekey
/// retries in one place).
async fn plan_clients(p: &plan::PlanFile) -> apply::Accounts<AwsClients> {
    account_clients(
        &p.settings.region,
        p.settings.endpoint_url.as_deref(),
        &p.settings.accounts,
        1,
    )
    .await
    .into_iter()
    .map(|(name, _, c)| (name, c))
    .collect()
}

/// The Cloud Storage client of a plan with GCS buckets.
fn plan_gcs(p: &plan::PlanFile) -> Option<GcsClient> {
    let project = p.settings.gcp_project.as_deref()?;
    let mut c = GcsClient::new(project, p.settings.gcp_endpoint.as_deref());
    c.max_bytes_per_call = p.settings.gcs_max_bytes_per_call;
    Some(c)
}

/// The Cloud Storage client of a campaign with a `gcp.gcs` section.
fn campaign_gcs(c: &LoadedCampaign) -> Option<GcsClient> {
    let gcp = c.spec.gcp.as_ref()?;
    gcp.gcs.as_ref()?;
    let mut client = GcsClient::new(&gcp.project, gcp.endpoint.as_deref());
    client.max_bytes_per_call = gcp
        .gcs
        .as_ref()
        .and_then(|g| g.max_bytes_rewritten_per_call);
    Some(client)
}

/// Team keys resolved in every account.
async fn resolve_all(
    c: &LoadedCampaign,
    accounts: &CampaignAccounts,
    reporter: &StderrReporter,
) -> Result<inventory::PinnedKeys, RekeyError> {
    Ok(resolve_recorded(c, accounts, reporter).await?.0)
}

/// Team keys resolved in every account, with every answer each account's KMS gave.
async fn resolve_recorded(
    c: &LoadedCampaign,
    accounts: &CampaignAccounts,
    reporter: &StderrReporter,
) -> Result<(inventory::PinnedKeys, Vec<inventory::file::AccountKeys>), RekeyError> {
    let mut pinned = inventory::pin_gcp_keys(c);
    let mut seen = Vec::new();
    for (name, id, clients) in accounts {
        let kms = inventory::file::Recording::new(clients);
        pinned.extend(inventory::resolve_keys_in(c, &kms, name, id.as_deref(), reporter).await?);
        seen.push(inventory::file::AccountKeys {
            name: name.clone(),
            id: id.clone(),
            resolved: kms.into_resolved(),
        });
    }
    Ok((pinned, seen))
}

/// The key-access verdicts planning reads besides the resources: the campaign's consumers
/// in every account, and the Cloud KMS preflight (which sets the Cloud KMS keys' states).
async fn planning_access(
    c: &LoadedCampaign,
    accounts: &CampaignAccounts,
    pinned: &mut inventory::PinnedKeys,
) -> Result<(Vec<crate::access::Verdict>, Vec<crate::access::Verdict>), RekeyError> {
    let mut consumers = Vec::new();
    for (name, _, clients) in accounts {
        consumers.extend(crate::preflight::consumer_verdicts(c, name, clients, pinned).await?);
    }
    let gcp = match campaign_gcs(c) {
        Some(gcs) => crate::preflight::gcp_key_verdicts(c, &gcs, pinned).await?,
        None => Vec::new(),
    };
    Ok((consumers, gcp))
}

/// The header of an inventory file: the keys, verdicts and key policies planning needs.
async fn inventory_header(
    c: &LoadedCampaign,
    accounts: &CampaignAccounts,
    reporter: &StderrReporter,
) -> Result<(inventory::PinnedKeys, inventory::file::Header), RekeyError> {
    use crate::providers::iam::AccessRead;
    let (mut pinned, resolved) = resolve_recorded(c, accounts, reporter).await?;
    let (consumers, gcp) = planning_access(c, accounts, &mut pinned).await?;
    let mut policies = BTreeMap::new();
    for (name, _, clients) in accounts {
        for (id, key) in &pinned {
            if inventory::split_pin(id).1 != name || policies.contains_key(&key.arn) {
                continue;
            }
            let facts = clients.key_facts(&key.arn).await?;
            policies.insert(
                key.arn.clone(),
                inventory::file::policy_fingerprint(&facts.policy.value),
            );
        }
    }
    let header = inventory::file::header(
        c,
        created_at()?,
        resolved,
        pinned.clone(),
        policies,
        consumers,
        gcp,
    )?;
    Ok((pinned, header))
}

/// Inventory every account: SageMaker first everywhere (so that the planner knows every
/// endpoint's artifacts before it meets them), then S3.
async fn inventory_all(
    c: &LoadedCampaign,
    accounts: &CampaignAccounts,
    pinned: &inventory::PinnedKeys,
    reporter: &StderrReporter,
    sink: &mut impl FnMut(Record) -> Result<(), RekeyError>,
) -> Result<inventory::InventoryStats, RekeyError> {
    for (name, _, clients) in accounts {
        inventory::run_sagemaker(c, name, clients, pinned, &mut *sink).await?;
    }
    let mut total = inventory::InventoryStats::default();
    for (name, _, clients) in accounts {
        let s = inventory::run(c, name, clients, clients, pinned, reporter, &mut *sink).await?;
        total.buckets += s.buckets;
        total.objects += s.objects;
        total.bytes += s.bytes;
        total.list_pages += s.list_pages;
        total.head_requests += s.head_requests;
    }
    if let Some(gcs) = campaign_gcs(c) {
        let s = inventory::run_gcs(c, &gcs, pinned, reporter, &mut *sink).await?;
        total.buckets += s.buckets;
        total.objects += s.objects;
        total.bytes += s.bytes;
        total.list_pages += s.list_pages;
    }
    Ok(total)
}

async fn verify_campaign(
    c: &LoadedCampaign,
    reporter: &StderrReporter,
    findings: Option<&Path>,
) -> Result<apply::Verification, RekeyError> {
    let aws = clients(c).await?;
    let pinned = resolve_all(c, &aws, reporter).await?;
    let mut v = apply::Verification::with_findings(findings)?;
    let mut sink = |r: Record| {
        let Some(k) = &r.team_key else { return Ok(()) };
        if matches!(&r.resource, Resource::SagemakerEndpoint(e) if e.nothing_to_cover()) {
            // Not applicable: no storage or output a key covers.
            return Ok(());
        }
        v.checked += 1;
        if r.class == EncryptionClass::TargetCmk {
            v.compliant += 1;
        } else {
            let found = match &r.resource {
                Resource::S3Bucket(b) => b.default_encryption.algorithm.clone(),
                Resource::S3Object(o) => o.encryption.algorithm.clone(),
                Resource::SagemakerEndpoint(e) => e
                    .kms_key_arn
                    .clone()
                    .unwrap_or_else(|| "service-managed".into()),
                Resource::SagemakerNotebookInstance(o) | Resource::SagemakerTrainingJob(o) => o
                    .kms_key_arn
                    .clone()
                    .unwrap_or_else(|| "service-managed".into()),
                Resource::GcsBucket(b) => b
                    .default_kms_key
                    .clone()
                    .unwrap_or_else(|| "google-managed".into()),
                Resource::GcsObject(o) => {
                    o.kms_key.clone().unwrap_or_else(|| "google-managed".into())
                }
            };
            v.add(apply::Finding {
                target: r.resource.display_name(),
                expected_key_arn: pinned.get(k).map(|p| p.arn.clone()).unwrap_or_default(),
                found: format!("{found} ({})", r.class),
                reason: None,
            })?;
        }
        Ok(())
    };
    inventory_all(c, &aws, &pinned, reporter, &mut sink).await?;
    v.finish()?;
    Ok(v)
}

async fn clients(c: &LoadedCampaign) -> Result<CampaignAccounts, RekeyError> {
    // A GCP-only campaign reaches no AWS account.
    let Some(aws) = c.spec.aws.as_ref() else {
        return Ok(Vec::new());
    };
    Ok(account_clients(&aws.region, aws.endpoint_url.as_deref(), &aws.accounts, 5).await)
}

/// (provider, kind) as the inventory table names a resource kind.
fn kind_label(kind: ResourceKind) -> (&'static str, &'static str) {
    match kind {
        ResourceKind::S3Bucket => ("S3", "bucket"),
        ResourceKind::S3Object => ("S3", "object"),
        ResourceKind::SagemakerEndpoint => ("SageMaker", "endpoint"),
        ResourceKind::SagemakerEndpointConfig => ("SageMaker", "endpoint-config"),
        ResourceKind::SagemakerModel => ("SageMaker", "model"),
        ResourceKind::SagemakerNotebookInstance => ("SageMaker", "notebook"),
        ResourceKind::SagemakerTrainingJob => ("SageMaker", "training-job"),
        ResourceKind::SagemakerDomain => ("SageMaker", "domain"),
        ResourceKind::SagemakerFeatureGroup => ("SageMaker", "feature-group"),
        ResourceKind::VertexEndpoint => ("Vertex AI", "endpoint"),
        ResourceKind::VertexDataset => ("Vertex AI", "dataset"),
        ResourceKind::VertexModel => ("Vertex AI", "model"),
        ResourceKind::BigqueryDataset => ("BigQuery", "dataset"),
        ResourceKind::GcsBucket => ("Cloud Storage", "bucket"),
        ResourceKind::GcsObject => ("Cloud Storage", "object"),
    }
}

#[derive(Default)]
struct ClassCounts {
    rows: BTreeMap<(ResourceKind, EncryptionClass), (u64, u64)>,
    unmatched: u64,
}

impl ClassCounts {
    fn add(&mut self, r: &Record) {
        let size = match &r.resource {
            Resource::S3Object(o) => o.size,
            Resource::GcsObject(o) => o.size,
            _ => 0,
        };
        let e = self.rows.entry((r.resource.kind(), r.class)).or_default();
        e.0 += 1;
        e.1 += size;
        if r.team_key.is_none() {
            self.unmatched += 1;
        }
    }
}

async fn run_inventory(
    c: &LoadedCampaign,
    out: Option<&Path>,
    output: Output,
    reporter: &StderrReporter,
) -> Result<i32, RekeyError> {
    let aws = clients(c).await?;
    let (pinned, header) = inventory_header(c, &aws, reporter).await?;
    // Written beside the file and renamed when the inventory finishes: a failed inventory
    // leaves no FILE (and its partial copy has no end line, so no plan takes it).
    let partial = out.map(|p| PathBuf::from(format!("{}.partial", p.display())));
    let mut file = match &partial {
        Some(p) => {
            Some(BufWriter::new(std::fs::File::create(p).map_err(|e| {
                RekeyError::io(format!("creating {}", p.display()), e)
            })?))
        }
        None => None,
    };
    let mut seal = inventory::file::Seal::default();
    let stdout = std::io::stdout();
    let mut stdout = BufWriter::new(stdout.lock());
    let mut counts = ClassCounts::default();
    let table = output == Output::Table;
    // The header opens the file, or JSON lines on stdout (which a shell may save as one).
    let header = serde_json::to_string(&header).map_err(|e| RekeyError::Internal(e.to_string()))?;
    seal.line(&header, false);
    if let Some(f) = file.as_mut() {
        writeln!(f, "{header}").map_err(|e| RekeyError::io("writing the inventory", e))?;
    } else if !table {
        writeln!(stdout, "{header}").map_err(|e| RekeyError::io("writing to stdout", e))?;
    }
    if table && file.is_none() {
        let _ = writeln!(
            stdout,
            "{:<10} {:<16} {:<10} {:>10}  NAME",
            "KIND", "CLASS", "TEAM-KEY", "SIZE"
        );
    }
    let mut sink = |r: Record| {
        counts.add(&r);
        let mut line = || {
            let l = serde_json::to_string(&r).map_err(|e| RekeyError::Internal(e.to_string()))?;
            seal.line(&l, true);
            Ok::<_, RekeyError>(l)
        };
        if let Some(f) = file.as_mut() {
            writeln!(f, "{}", line()?).map_err(|e| RekeyError::io("writing the inventory", e))?;
        } else if table {
            let size = match &r.resource {
                Resource::S3Object(o) => summary::bytes(o.size),
                Resource::GcsObject(o) => summary::bytes(o.size),
                _ => String::new(),
            };
            let kind = kind_label(r.resource.kind()).1;
            writeln!(
                stdout,
                "{:<10} {:<16} {:<10} {:>10}  {}",
                kind,
                r.class.as_str(),
                r.team_key.as_deref().unwrap_or("-"),
                size,
                r.resource.display_name()
            )
            .map_err(|e| RekeyError::io("writing to stdout", e))?;
        } else {
            writeln!(stdout, "{}", line()?).map_err(|e| RekeyError::io("writing to stdout", e))?;
        }
        Ok(())
    };
    let stats = inventory_all(c, &aws, &pinned, reporter, &mut sink).await?;
    let trailer =
        serde_json::to_string(&seal.trailer()).map_err(|e| RekeyError::Internal(e.to_string()))?;
    if let (Some(mut f), Some(partial), Some(out)) = (file, partial, out) {
        writeln!(f, "{trailer}").map_err(|e| RekeyError::io("writing the inventory", e))?;
        f.flush()
            .map_err(|e| RekeyError::io("writing the inventory", e))?;
        drop(f);
        std::fs::rename(&partial, out)
            .map_err(|e| RekeyError::io(format!("renaming {}", partial.display()), e))?;
    } else if !table {
        writeln!(stdout, "{trailer}").map_err(|e| RekeyError::io("writing to stdout", e))?;
    }
    if table {
        let _ = writeln!(
            stdout,
            "\nInventory {}: {} buckets, {} objects, {} ({} list pages, {} HEAD requests)",
            c.spec.campaign,
            stats.buckets,
            stats.objects,
            summary::bytes(stats.bytes),
            stats.list_pages,
            stats.head_requests
        );
        // Grouped by provider, each with its own subtotal.
        let mut provider = "";
        let mut sub = (0u64, 0u64);
        let subtotal = |out: &mut dyn Write, p: &str, sub: (u64, u64)| {
            if !p.is_empty() {
                let _ = writeln!(
                    out,
                    "    {:<14} {:<16} {:>9} {:>11}",
                    "",
                    "total",
                    sub.0,
                    summary::bytes(sub.1)
                );
            }
        };
        for ((kind, class), (n, b)) in &counts.rows {
            let (p, kind) = kind_label(*kind);
            if p != provider {
                subtotal(&mut stdout, provider, sub);
                let _ = writeln!(
                    stdout,
                    "  {p}\n    {:<14} {:<16} {:>9} {:>11}",
                    "kind", "class", "count", "bytes"
                );
                provider = p;
                sub = (0, 0);
            }
            sub.0 += n;
            sub.1 += b;
            let _ = writeln!(
                stdout,
                "    {:<14} {:<16} {:>9} {:>11}",
                kind,
                class.as_str(),
                n,
                summary::bytes(*b)
            );
        }
        subtotal(&mut stdout, provider, sub);
        if counts.unmatched > 0 {
            let _ = writeln!(
                stdout,
                "  {} resources match no mapping rule and would not be planned",
                counts.unmatched
            );
        }
    }
    stdout
        .flush()
        .map_err(|e| RekeyError::io("writing to stdout", e))?;
    Ok(exit_codes::OK)
}

/// The plan's creation time: `SOURCE_DATE_EPOCH` when set (reproducible plans), else now.
fn created_at() -> Result<String, RekeyError> {
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<i64>().map_err(|_| {
            RekeyError::usage(
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"),
                "unset it, or set it to seconds since 1970",
            )
        })?,
        Err(_) => chrono::Utc::now().timestamp(),
    };
    let t = chrono::DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| RekeyError::usage("SOURCE_DATE_EPOCH is out of range", "unset it"))?;
    Ok(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

async fn run_plan(
    c: &LoadedCampaign,
    out: &Path,
    from_inventory: Option<&Path>,
    output: Output,
    reporter: &StderrReporter,
) -> Result<i32, RekeyError> {
    if !out.to_string_lossy().ends_with(".plan.yaml") {
        return Err(RekeyError::usage(
            format!("the plan path {} does not end in .plan.yaml", out.display()),
            "name it plans/NAME.plan.yaml; the manifest and journal go beside it",
        ));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| RekeyError::io(format!("creating {}", dir.display()), e))?;
    }
    let created = created_at()?;
    // Refused before any cloud call when it would orphan applied work (and checked again
    // just before the plan is written: an apply may have started meanwhile).
    apply::guard_replan_check(out)?;
    let campaign_sha256 = plan::file_sha256(&c.path)
        .map_err(|e| RekeyError::io(format!("reading {}", c.path.display()), e))?;
    let planner = match from_inventory {
        // Offline: the keys, verdicts and resources as the saved inventory read them.
        Some(path) => {
            let mut saved = inventory::file::open(path, c, reporter).await?;
            let mut planner = Planner::new(c, saved.pinned.clone())?;
            planner.set_access(std::mem::take(&mut saved.access));
            saved.records(c, |r| planner.add(&r))?;
            planner
        }
        None => {
            let aws = clients(c).await?;
            let mut pinned = resolve_all(c, &aws, reporter).await?;
            let (mut access, gcp) = planning_access(c, &aws, &mut pinned).await?;
            access.extend(gcp);
            let mut planner = Planner::new(c, pinned.clone())?;
            planner.set_access(access);
            inventory_all(c, &aws, &pinned, reporter, &mut |r| planner.add(&r)).await?;
            planner
        }
    };
    if let Some(aside) = apply::guard_replan(out)? {
        eprintln!(
            "the old journal had nothing to roll back: set aside as {}",
            aside.display()
        );
    }
    // The manifest is written beside the plan by `finish`: the old pair goes first.
    if let Some(dir) = apply::keep_generation(out)? {
        eprintln!(
            "the previous plan and its manifest are kept in {}",
            dir.display()
        );
    }
    let p = planner.finish(out, created, campaign_sha256)?;
    plan::write(out, &p)?;
    reporter.finish();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&p.summary)
                .map_err(|e| RekeyError::Internal(e.to_string()))?
        ),
        Output::Table => {
            print!("{}", summary::render(&p));
            println!(
                "Wrote {} and {}",
                out.display(),
                out.with_file_name(&p.manifest.file).display()
            );
        }
    }
    Ok(exit_codes::OK)
}

/// `rekey keys`: read what exists (keys under the team aliases and their policies, the
/// SageMaker graph, the Cloud Storage service agent and Cloud KMS keys), derive, write.
/// What `rekey keys` does with what it derived.
enum KeysMode<'a> {
    Emit(KeysEmit, Option<&'a Path>),
    Apply {
        replace_policy: bool,
        journal: &'a Path,
        yes: bool,
    },
}

async fn run_keys(
    c: &LoadedCampaign,
    mode: KeysMode<'_>,
    reporter: &StderrReporter,
) -> Result<i32, RekeyError> {
    use crate::keys;
    use crate::providers::iam::AccessRead;
    use crate::providers::KeyRead;
    let Some(kp) = c.spec.key_policy.clone() else {
        return Err(RekeyError::usage(
            format!("{} has no key_policy section", c.path.display()),
            "add `key_policy: { admins: [ARN...] }` naming who administers the team keys (docs/keys.md)",
        ));
    };
    let aws = clients(c).await?;
    let mut facts = Vec::new();
    let mut callers = BTreeMap::new();
    for (name, id, clients) in &aws {
        let caller = clients.caller().await?;
        callers.insert(name.clone(), caller.clone());
        let account_id = id
            .clone()
            .unwrap_or_else(|| caller.split(':').nth(4).unwrap_or_default().to_string());
        let operators = if kp.operators.is_empty() {
            vec![caller.clone()]
        } else {
            kp.operators.clone()
        };
        let mut existing = BTreeMap::new();
        let mut pinned = inventory::PinnedKeys::new();
        for (team, k) in &c.spec.keys {
            let Some(alias) = &k.aws else { continue };
            let Some(key) = clients.describe_key(alias).await? else {
                continue;
            };
            if key.manager != "CUSTOMER" {
                return Err(RekeyError::usage(
                    format!(
                        "team key {team}: {alias} is an AWS managed key ({})",
                        key.arn
                    ),
                    format!("name a customer-managed key's alias in keys.{team}.aws"),
                ));
            }
            let policy = clients.key_facts(&key.arn).await?.policy.value;
            pinned.insert(
                inventory::pin_id(team, name),
                inventory::PinnedKey {
                    alias: alias.clone(),
                    region: key.region().unwrap_or(c.region()).to_string(),
                    arn: key.arn.clone(),
                    key_id: key.key_id.clone(),
                    state: key.state.clone(),
                },
            );
            existing.insert(team.clone(), (key, policy));
        }
        let mut sagemaker = Vec::new();
        inventory::run_sagemaker(c, name, clients, &pinned, |r| {
            sagemaker.push(r);
            Ok(())
        })
        .await?;
        facts.push(keys::AccountFacts {
            name: name.clone(),
            id: account_id,
            operators,
            existing,
            sagemaker,
        });
    }
    let gcp = match c.spec.gcp.as_ref() {
        Some(g) if c.spec.keys.values().any(|k| k.gcp.is_some()) => {
            let gcs = GcsClient::new(&g.project, g.endpoint.as_deref());
            let mut existing = std::collections::BTreeSet::new();
            for k in c.spec.keys.values() {
                let Some(name) = &k.gcp else { continue };
                let name = crate::providers::gcs::key_name(name);
                match gcs.crypto_key(&name).await {
                    Ok(_) => {
                        existing.insert(name);
                    }
                    Err(crate::error::ProviderError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(keys::GcpFacts {
                service_agent: gcs.service_agent().await?,
                existing,
            })
        }
        _ => None,
    };
    let model = keys::derive(c, &facts, gcp.as_ref())?;
    reporter.finish();
    let (emit, out) = match mode {
        KeysMode::Emit(emit, out) => (emit, out),
        KeysMode::Apply {
            replace_policy,
            journal,
            yes,
        } => {
            return keys_apply(
                c,
                &model,
                &facts,
                &aws,
                &callers,
                replace_policy,
                journal,
                yes,
            )
            .await;
        }
    };
    let files: BTreeMap<String, String> = match emit {
        KeysEmit::Terraform => keys::terraform(&model)?,
        KeysEmit::Json => {
            let mut text = serde_json::to_string_pretty(&model)
                .map_err(|e| RekeyError::Internal(e.to_string()))?;
            text.push('\n');
            [("keys.json".to_string(), text)].into()
        }
    };
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| RekeyError::io(format!("creating {}", dir.display()), e))?;
            for (name, text) in &files {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .map_err(|e| RekeyError::io(format!("writing {}", path.display()), e))?;
                println!("wrote {}", path.display());
            }
        }
        None => {
            for text in files.values() {
                print!("{text}");
            }
        }
    }
    Ok(exit_codes::OK)
}

/// `rekey keys apply`: every refusal first (nothing written), then for each AWS team key:
/// create it (with its policy), its rotation and its alias, or bring an existing one's rotation
/// and policy to what was derived. Each write is journaled before it is sent and when it ends.
#[allow(clippy::too_many_arguments)]
async fn keys_apply(
    c: &LoadedCampaign,
    model: &crate::keys::Model,
    facts: &[crate::keys::AccountFacts],
    aws: &CampaignAccounts,
    callers: &BTreeMap<String, String>,
    replace_policy: bool,
    journal: &Path,
    yes: bool,
) -> Result<i32, RekeyError> {
    use crate::keys;
    let admins = c
        .spec
        .key_policy
        .as_ref()
        .map(|k| k.admins.clone())
        .unwrap_or_default();
    let current = |k: &keys::AwsKey| {
        facts
            .iter()
            .find(|f| f.name == k.account)
            .and_then(|f| f.existing.get(&k.team))
            .map(|(_, p)| p.clone())
    };
    let mut refused = Vec::new();
    for k in &model.aws {
        let caller = callers.get(&k.account).map(String::as_str).unwrap_or("");
        if keys::locks_out(&admins, caller) {
            refused.push(format!(
                "{} in {}: the caller {caller} is not in key_policy.admins, and KMS refuses a policy that would not let it put the policy again",
                k.alias, k.account
            ));
        }
        if let Some(e) = k.existing.as_ref().filter(|e| e.state != "Enabled") {
            refused.push(format!(
                "{} in {}: key {} is {}; rekey enables no key",
                k.alias, k.account, e.key_id, e.state
            ));
        }
        if let (Some(cur), false) = (current(k), replace_policy) {
            let dropped = keys::dropped(&cur, &keys::applied_policy(&admins, k));
            if !dropped.is_empty() {
                refused.push(format!(
                    "{} in {}: its policy has statements rekey did not write, which keys apply would drop: {}",
                    k.alias,
                    k.account,
                    dropped
                        .iter()
                        .map(keys::statement_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(RekeyError::usage(
            format!(
                "keys apply refuses, nothing was written: {}",
                refused.join("; ")
            ),
            "run it as a key administrator; for statements rekey did not write, move what they allow into the campaign (consumers:, key_policy:), pass --replace-policy to drop them, or use `rekey keys --emit terraform`, which keeps them",
        ));
    }
    if model.aws.is_empty() {
        println!(
            "keys apply: no AWS team keys (Cloud KMS keys: use `rekey keys --emit terraform`)"
        );
        return Ok(exit_codes::OK);
    }
    confirm(
        yes,
        &format!(
            "create or update {} AWS team key(s) of campaign {}",
            model.aws.len(),
            c.spec.campaign
        ),
    )?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)
        .map_err(|e| RekeyError::io(format!("opening {}", journal.display()), e))?;
    let mut entry = |state: &str, k: &keys::AwsKey, action: &str, detail: serde_json::Value| {
        let line = serde_json::json!({
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "state": state,
            "account": k.account,
            "team": k.team,
            "alias": k.alias,
            "action": action,
            "detail": detail,
        });
        writeln!(log, "{line}")
            .and_then(|_| log.sync_data())
            .map_err(|e| RekeyError::io(format!("writing {}", journal.display()), e))
    };
    // Keys a cut-short run created but could not name yet: (account, alias) → key id.
    let unnamed = keys::created_unnamed(journal)?;
    let mut writes = 0;
    for k in &model.aws {
        let Some((_, _, clients)) = aws.iter().find(|(n, _, _)| *n == k.account) else {
            continue;
        };
        let desired = keys::applied_policy(&admins, k);
        let text = desired.to_string();
        let key_id = match &k.existing {
            None => {
                let id = match unnamed.get(&(k.account.clone(), k.alias.clone())) {
                    // Created by a run cut before its alias: named now, its policy put again.
                    Some(id) => {
                        entry(
                            "started",
                            k,
                            "put-key-policy",
                            serde_json::json!({ "key_id": id, "after": desired }),
                        )?;
                        clients.put_key_policy(id, &text).await?;
                        entry(
                            "done",
                            k,
                            "put-key-policy",
                            serde_json::json!({ "key_id": id }),
                        )?;
                        id.clone()
                    }
                    None => {
                        entry(
                            "started",
                            k,
                            "create-key",
                            serde_json::json!({ "policy": desired }),
                        )?;
                        let id = clients
                            .create_team_key(
                                &text,
                                &format!("Team key {} of campaign {}", k.team, c.spec.campaign),
                                &c.spec.campaign,
                            )
                            .await?;
                        entry("done", k, "create-key", serde_json::json!({ "key_id": id }))?;
                        id
                    }
                };
                entry(
                    "started",
                    k,
                    "create-alias",
                    serde_json::json!({ "key_id": id }),
                )?;
                clients.create_alias(&k.alias, &id).await?;
                entry(
                    "done",
                    k,
                    "create-alias",
                    serde_json::json!({ "key_id": id }),
                )?;
                println!("created {} ({id}) in {}", k.alias, k.account);
                writes += 2;
                id
            }
            Some(e) => {
                let cur = current(k).unwrap_or_default();
                if cur != desired {
                    // The policy it had, to put back by hand if need be.
                    entry(
                        "started",
                        k,
                        "put-key-policy",
                        serde_json::json!({ "key_id": e.key_id, "before": cur, "after": desired }),
                    )?;
                    clients.put_key_policy(&e.key_id, &text).await?;
                    entry(
                        "done",
                        k,
                        "put-key-policy",
                        serde_json::json!({ "key_id": e.key_id }),
                    )?;
                    println!(
                        "updated the policy of {} ({}) in {}",
                        k.alias, e.key_id, k.account
                    );
                    writes += 1;
                }
                e.key_id.clone()
            }
        };
        if !clients.rotation_enabled(&key_id).await? {
            entry(
                "started",
                k,
                "enable-rotation",
                serde_json::json!({ "key_id": key_id, "days": k.rotation_days }),
            )?;
            clients.enable_rotation(&key_id, k.rotation_days).await?;
            entry(
                "done",
                k,
                "enable-rotation",
                serde_json::json!({ "key_id": key_id }),
            )?;
            writes += 1;
        }
    }
    println!(
        "keys apply: {writes} KMS write{} (journal {})",
        if writes == 1 { "" } else { "s" },
        journal.display()
    );
    Ok(exit_codes::OK)
}

/// `rekey guard`: read every file first (exit 2 before any cloud call), then resolve the team
/// keys of the account the code deploys to and check.
async fn run_guard(
    c: &LoadedCampaign,
    files: &[PathBuf],
    account: Option<&str>,
    output: GuardOutput,
    reporter: &StderrReporter,
) -> Result<i32, RekeyError> {
    use crate::guard;
    let mut report = guard::Report {
        files: files.len(),
        ..Default::default()
    };
    let mut found = Vec::new();
    for f in files {
        let (mut resources, ignored) = guard::read(f, c.region())?;
        found.append(&mut resources);
        for (t, n) in ignored {
            *report.ignored.entry(t).or_default() += n;
        }
    }
    let aws_needed = found
        .iter()
        .any(|f| f.provider == crate::model::Provider::Aws);
    let mut accounts = Vec::new();
    let mut name = inventory::DEFAULT_ACCOUNT.to_string();
    if let (true, Some(aws)) = (aws_needed, c.spec.aws.as_ref()) {
        let chosen: Vec<crate::campaign::AwsAccount> = match (account, aws.accounts.is_empty()) {
            (None, true) => Vec::new(),
            (Some(a), false) => {
                let Some(acc) = aws.accounts.iter().find(|x| x.name == a) else {
                    return Err(RekeyError::usage(
                        format!("--account {a} is not an account of the campaign"),
                        format!(
                            "pass one of: {}",
                            aws.accounts
                                .iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                };
                name = acc.name.clone();
                vec![acc.clone()]
            }
            (None, false) => {
                return Err(RekeyError::usage(
                    "the campaign names accounts: which one does this code deploy to?",
                    "pass --account NAME",
                ))
            }
            (Some(a), true) => {
                return Err(RekeyError::usage(
                    format!("--account {a}: the campaign names no accounts"),
                    "leave --account out",
                ))
            }
        };
        accounts = account_clients(&aws.region, aws.endpoint_url.as_deref(), &chosen, 5).await;
    }
    // A team alias that does not exist yet is no error here (the code may create its key):
    // resolved as in a named account, where such a key is left out.
    let mut pinned = inventory::PinnedKeys::new();
    for (n, id, clients) in &accounts {
        let id = match id {
            Some(id) => id.clone(),
            None => {
                use crate::providers::iam::AccessRead;
                let caller = clients.caller().await?;
                caller.split(':').nth(4).unwrap_or_default().to_string()
            }
        };
        pinned.extend(inventory::resolve_keys_in(c, clients, n, Some(&id), reporter).await?);
    }
    let teams = guard::Teams {
        campaign: c,
        account: &name,
        pinned: &pinned,
    };
    guard::check(&teams, &found, accounts.first().map(|a| &a.2), &mut report).await?;
    reporter.finish();
    let text = match output {
        GuardOutput::Text => guard::render_text(&report),
        GuardOutput::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| RekeyError::Internal(e.to_string()))?,
        GuardOutput::Sarif => serde_json::to_string_pretty(&guard::sarif(&report))
            .map_err(|e| RekeyError::Internal(e.to_string()))?,
    };
    println!("{}", text.trim_end());
    Ok(if report.findings.is_empty() {
        exit_codes::OK
    } else {
        exit_codes::NON_COMPLIANT
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inventory table counts the bytes of Cloud Storage objects as of S3 objects.
    #[test]
    fn gcs_objects_count_their_bytes() {
        let mut counts = ClassCounts::default();
        let object = |size| Record {
            resource: Resource::GcsObject(crate::model::GcsObject {
                account: "gcp:p".into(),
                bucket: "b".into(),
                name: "k".into(),
                generation: 1,
                size,
                storage_class: "STANDARD".into(),
                content_type: String::new(),
                kms_key: None,
                customer_supplied: false,
                content_hash: None,
                hold: None,
            }),
            team_key: Some("ml".into()),
            class: EncryptionClass::GoogleManaged,
        };
        counts.add(&object(1000));
        counts.add(&object(24));
        assert_eq!(
            counts.rows[&(ResourceKind::GcsObject, EncryptionClass::GoogleManaged)],
            (2, 1024)
        );
    }
}

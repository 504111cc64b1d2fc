# Team keys of campaign keys-example in Google Cloud project demo-project: written by `rekey keys`.
# Review, then `terraform plan`; keys that exist are imported, never replaced.

import {
  to = google_kms_key_ring.us_ml
  id = "projects/demo-project/locations/us/keyRings/ml"
}

resource "google_kms_key_ring" "us_ml" {
  project  = "demo-project"
  location = "us"
  name     = "ml"
}

import {
  to = google_kms_crypto_key.vision
  id = "projects/demo-project/locations/us/keyRings/ml/cryptoKeys/ml-vision"
}

resource "google_kms_crypto_key" "vision" {
  name            = "ml-vision"
  key_ring        = google_kms_key_ring.us_ml.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = "15552000s"
}

resource "google_kms_crypto_key_iam_member" "vision_1" {
  crypto_key_id = google_kms_crypto_key.vision.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-123456789@gs-project-accounts.iam.gserviceaccount.com"
}

resource "google_kms_crypto_key_iam_member" "vision_2" {
  crypto_key_id = google_kms_crypto_key.vision.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:trainer@demo-project.iam.gserviceaccount.com"
}

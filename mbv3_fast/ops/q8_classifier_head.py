"""mbv3::q8_classifier_head (int8): in progress."""

"""mbv3::q8_se (int8): in progress."""

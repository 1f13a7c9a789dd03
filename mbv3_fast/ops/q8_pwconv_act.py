"""mbv3::q8_pwconv_act (int8): in progress."""

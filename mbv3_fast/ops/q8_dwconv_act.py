"""mbv3::q8_dwconv_act (int8): in progress."""

"""mbv3::q8_conv_act (int8): in progress."""

//! apparmor-loader: make the kernel's AppArmor profiles converge to a directory of profile files.

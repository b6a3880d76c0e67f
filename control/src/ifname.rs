//! The one rule for the names of network devices fastpath is given (a config file's bridge,
//! underlay and VXLAN devices; a CNI network's bridge and CNI_IFNAME): what the kernel accepts
//! (`dev_valid_name`), less control bytes, which nobody means in a name.

/// The longest device name the kernel takes (IFNAMSIZ less its NUL).
pub const MAX_LEN: usize = 15;

/// A name the kernel would refuse for a device; the caller says which name, and where from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a device name (1 to 15 bytes, not '.' or '..', no '/', ':' or spaces)")]
pub struct InvalidIfname;

pub fn check(name: &str) -> Result<(), InvalidIfname> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            // The kernel's isspace also takes 0xa0 (no-break space in Latin-1) for a space.
            .any(|b| {
                b == b'/'
                    || b == b':'
                    || b.is_ascii_whitespace()
                    || b.is_ascii_control()
                    || b == 0xa0
            });
    if ok { Ok(()) } else { Err(InvalidIfname) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn takes_what_the_kernel_takes() {
        for good in ["eth0", "fp-br0", "a", "fpc0123456789ab", "veth.1", "é"] {
            assert_eq!(super::check(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "fpc0123456789abc",
            "à",
        ] {
            assert!(super::check(bad).is_err(), "{bad:?}");
        }
    }
}

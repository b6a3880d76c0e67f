//! `fastpath cleanup`: removes what an interrupted demo left behind and prints what went.

use anyhow::Result;

pub fn run() -> Result<()> {
    let removed = super::demo::cleanup()?;
    if removed.is_empty() {
        println!("nothing to clean up");
    } else {
        println!("removed: {}", removed.join(", "));
    }
    Ok(())
}

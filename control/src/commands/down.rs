//! `fastpath down`: removes what this prefix's instance created and prints what went.

use anyhow::Result;

use crate::{cluster, ownership::Ownership};

pub async fn run(prefix: &str) -> Result<()> {
    let removed = cluster::down(&Ownership::new(prefix)).await?;
    if removed.is_empty() {
        println!("nothing to remove");
    } else {
        println!("removed {}", removed.join(", "));
    }
    Ok(())
}

//! `fastpath status`: the cluster as it is now, as text or JSON.

use std::path::Path;

use anyhow::Result;

use crate::cluster;

pub async fn run(prefix: &str, config: Option<&Path>, json: bool) -> Result<()> {
    let cluster = super::load_cluster(config, prefix)?;
    let status = cluster::status(&cluster).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", cluster::render_status(&status));
    }
    Ok(())
}

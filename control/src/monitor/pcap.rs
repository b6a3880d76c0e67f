//! The captured bytes as a classic pcap file (libpcap 2.4, Ethernet, microsecond times), which
//! tcpdump and Wireshark read.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use datapath_common::events::SNAP_MAX;

const MAGIC_MICROSECONDS: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;

pub struct PcapWriter {
    out: BufWriter<File>,
    path: String,
}

impl PcapWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = Self {
            out: BufWriter::new(file),
            path: path.display().to_string(),
        };
        let mut header = Vec::with_capacity(24);
        header.extend(MAGIC_MICROSECONDS.to_ne_bytes());
        header.extend(2u16.to_ne_bytes());
        header.extend(4u16.to_ne_bytes());
        header.extend(0i32.to_ne_bytes()); // this zone: UTC
        header.extend(0u32.to_ne_bytes()); // sigfigs
        header.extend(SNAP_MAX.to_ne_bytes());
        header.extend(LINKTYPE_ETHERNET.to_ne_bytes());
        writer.write(&header)?;
        Ok(writer)
    }

    /// One packet: its first bytes `data`, captured at `time_unix_ns`, `len` bytes long.
    pub fn packet(&mut self, time_unix_ns: u64, len: u32, data: &[u8]) -> Result<()> {
        let mut record = Vec::with_capacity(16 + data.len());
        record.extend(((time_unix_ns / 1_000_000_000) as u32).to_ne_bytes());
        record.extend(((time_unix_ns % 1_000_000_000 / 1000) as u32).to_ne_bytes());
        record.extend((data.len() as u32).to_ne_bytes());
        record.extend(len.max(data.len() as u32).to_ne_bytes());
        record.extend_from_slice(data);
        self.write(&record)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.path))
    }
}

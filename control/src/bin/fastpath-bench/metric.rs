//! What the benchmark measures: the metrics, and a sample (one value of a row in a round).

use serde::Serialize;

use super::rows::{Family, Row};

/// What is measured, one value per row and round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Small UDP datagrams (18 bytes: 60-byte frames over IPv4, 80 over IPv6) per second reaching
    /// the receiving pod (counted by bench_sink).
    UdpRate,
    /// Busy CPU nanoseconds (whole machine) per packet of UdpRate.
    UdpCpu,
    /// UDP datagrams per second read by a socket in the receiving pod.
    UdpSocket,
    /// TCP Gbit/s, one stream.
    Tcp1,
    /// Busy CPU seconds per GB of Tcp1.
    Tcp1Cpu,
    /// TCP Gbit/s, four streams.
    Tcp4,
    /// TCP request/response (64 bytes each way) round trips per second.
    RrRate,
    RrP50,
    RrP99,
    RrP999,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::UdpRate,
        Metric::UdpCpu,
        Metric::UdpSocket,
        Metric::Tcp1,
        Metric::Tcp1Cpu,
        Metric::Tcp4,
        Metric::RrRate,
        Metric::RrP50,
        Metric::RrP99,
        Metric::RrP999,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::UdpRate => "UDP Mpps",
            Metric::UdpCpu => "ns CPU/pkt",
            Metric::UdpSocket => "UDP sock Mpps",
            Metric::Tcp1 => "TCP×1 Gb/s",
            Metric::Tcp1Cpu => "s CPU/GB",
            Metric::Tcp4 => "TCP×4 Gb/s",
            Metric::RrRate => "RR k/s",
            Metric::RrP50 => "RR p50 µs",
            Metric::RrP99 => "p99 µs",
            Metric::RrP999 => "p99.9 µs",
        }
    }

    /// The value as the table shows it (Mpps, k/s; the JSON keeps raw units).
    pub fn display(self, value: f64) -> f64 {
        match self {
            Metric::UdpRate | Metric::UdpSocket => value / 1e6,
            Metric::RrRate => value / 1e3,
            _ => value,
        }
    }

    /// The unit of the raw value.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::UdpRate | Metric::UdpSocket => "packets/s",
            Metric::UdpCpu => "ns/packet",
            Metric::Tcp1 | Metric::Tcp4 => "Gbit/s",
            Metric::Tcp1Cpu => "s/GB",
            Metric::RrRate => "transactions/s",
            Metric::RrP50 | Metric::RrP99 | Metric::RrP999 => "µs",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::UdpRate | Metric::UdpSocket | Metric::Tcp1 | Metric::Tcp4 | Metric::RrRate
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub round: u32,
    pub row: Row,
    /// The row's family, beside it so that a script needs no lookup.
    pub family: Family,
    pub metric: Metric,
    pub value: f64,
}

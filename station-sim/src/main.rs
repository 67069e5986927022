//! `station-sim radio`: a simulated Kenwood TS-2000 on a pseudo-terminal.
//! Point Hamlib (`rigctl -m 2014 -r PATH`) or the edge proxy at the path it prints.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Simulated station hardware on pseudo-terminals")]
struct Cli {
    #[command(subcommand)]
    device: Device,
}

#[derive(Subcommand)]
enum Device {
    /// A Kenwood TS-2000 style CAT radio.
    Radio {
        /// Also make this symlink to the pty (e.g. /tmp/radio).
        #[arg(long)]
        link: Option<std::path::PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().device {
        Device::Radio { link } => {
            let radio = station_sim::pty::PtyRadio::start(station_sim::kenwood::Radio::default())?;
            if let Some(link) = &link {
                let _ = std::fs::remove_file(link);
                std::os::unix::fs::symlink(&radio.path, link)?;
            }
            println!(
                "TS-2000 simulator on {} (Ctrl+C stops it)",
                radio.path.display()
            );
            println!(
                "try: rigctl -m 2014 -r {} -s 38400 f F 7074000 f t T 1 t",
                radio.path.display()
            );
            loop {
                std::thread::park();
            }
        }
    }
}

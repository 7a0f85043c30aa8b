//! The `tipwire` binary: `serve` runs the gateway, the other subcommands are
//! the admin CLI. All logic lives in the library; this file parses arguments,
//! loads configuration and prints.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use tipwire::admin;
use tipwire::app::Application;
use tipwire::bus::AlertReader;
use tipwire::clock;
use tipwire::config::Settings;
use tipwire::crypto::{IdentityKey, KeyKind, Keyring};
use tipwire::mediator::devices::{Devices, Invites};
use tipwire::mediator::offboarding::Offboarding;
use tipwire::mediator::{DeviceId, MediatorDirectory};

#[derive(Parser)]
#[command(
    name = "tipwire",
    version,
    about = "Anonymous tip and conflict-alert gateway"
)]
struct Cli {
    /// Configuration file layered over the built-in defaults (config/default.toml).
    #[arg(long, global = true, env = "TIPWIRE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Make, list and rotate the gateway's keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Enrol, list and remove mediators (recipients of tips).
    #[command(subcommand)]
    Mediator(MediatorCommand),
    /// Follow the alert stream.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Write each tip's sealed envelope to DIR/<tip_id>.age.
    Export {
        #[arg(long)]
        out: PathBuf,
        /// Unix seconds, an RFC 3339 time, or an age such as 7d.
        #[arg(long)]
        since: Option<String>,
    },
    /// Remove one thread, or everything from before a time, now: tips, their
    /// state, replies, queued messages, and the sealed reply address
    /// (crypto-shredded: the AOF is rewritten without it).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["thread", "before"])))]
    Purge {
        /// Thread id (32 hex digits) from the alert.
        #[arg(long)]
        thread: Option<String>,
        /// Unix seconds, an RFC 3339 time, or an age such as 90d.
        #[arg(long)]
        before: Option<String>,
    },
    /// Queue a message to the tipster of a thread (sent by the reply relay).
    Reply {
        /// Thread id (32 hex digits) from the alert.
        #[arg(long)]
        thread: String,
        #[arg(long)]
        text: String,
    },
    /// Development helpers.
    #[command(subcommand)]
    Dev(DevCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make version 1 of every key; refuses to overwrite.
    Init {
        /// Where the escrow identity is written: removable media that goes
        /// offline afterwards, never the gateway's keys directory.
        #[arg(long)]
        escrow_out: PathBuf,
    },
    /// List key versions and fingerprints (never secret bytes).
    Show,
    /// Add the next version of one key; older versions stay readable.
    /// Rotating `vapid` invalidates every mediator's push subscription.
    Rotate {
        kind: Kind,
        #[arg(long)]
        escrow_out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Escrow,
    Relay,
    Pseudonym,
    /// Web Push (VAPID) key; makes version 1 on a keyring that has none.
    Vapid,
}

#[derive(Subcommand)]
enum MediatorCommand {
    /// Enrol a recipient for one or more zones.
    Add {
        #[arg(long)]
        name: String,
        /// Zone id; repeat or separate with commas.
        #[arg(long)]
        zone: Vec<String>,
        /// Receives every zone's tips and escalations.
        #[arg(long)]
        supervisor: bool,
        /// age X25519 public key (age1…).
        #[arg(long)]
        recipient: String,
    },
    /// List people: each directory entry with the devices enrolled under it.
    List,
    /// Offboard a person at once: every device, session, live stream, push
    /// subscription and pending invite under their name, their recipient
    /// status, and their claims (the alerts open again and escalate).
    Remove {
        /// A directory entry (m_…) or device (d_…) id of the person.
        id: String,
    },
    /// Make a one-time enrolment link (with a QR code) for a mediator's phone.
    /// The phone makes its own keys and registers only their public halves.
    Invite {
        #[arg(long)]
        name: String,
        /// Zone ids, comma-separated (or repeat the option).
        #[arg(long = "zones", alias = "zone")]
        zones: Vec<String>,
        /// Receives every zone's tips and escalations.
        #[arg(long)]
        supervisor: bool,
    },
    /// List enrolled devices: id, name, zones, on duty.
    Devices,
    /// End one device at once: its sessions, live streams, push subscription,
    /// recipient status from the next tip on, and its claims (reopened).
    Revoke { device_id: String },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Print tips as they arrive, opened with an identity file.
    Tail {
        #[arg(long)]
        identity: PathBuf,
        /// Start from the oldest entry instead of new ones only.
        #[arg(long)]
        from_start: bool,
        /// Exit after this many entries.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Make dev keys, a dev TLS certificate and a demo mediator under DIR.
    Init {
        #[arg(long, default_value = ".dev")]
        dir: PathBuf,
    },
}

/// The escrow identity opens every tip; the gateway must never hold it.
fn refuse_escrow_on_gateway(
    escrow_out: &std::path::Path,
    keys_dir: &std::path::Path,
) -> Result<()> {
    let dir = std::fs::canonicalize(keys_dir).unwrap_or_else(|_| keys_dir.to_owned());
    let parent = escrow_out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), std::path::Path::to_owned);
    let parent = std::fs::canonicalize(&parent).unwrap_or(parent);
    if parent.starts_with(&dir) {
        bail!(
            "--escrow-out {}: inside keys.dir, where the gateway would hold a key that opens every tip. Fix: write it to removable media, e.g. --escrow-out /media/usb/escrow.identity",
            escrow_out.display()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            tipwire::telemetry::init(&settings.log.filter, std::io::stderr)
                .map_err(anyhow::Error::msg)?;
            let app = Application::build(settings).await?;
            app.run_until_signalled().await?;
        }
        Command::Keys(KeysCommand::Init { escrow_out }) => {
            refuse_escrow_on_gateway(&escrow_out, &settings.keys.dir)?;
            let report = Keyring::init(&settings.keys.dir, &escrow_out)?;
            print!("{}", admin::keys::describe_init(&report));
        }
        Command::Keys(KeysCommand::Show) => {
            let ring = Keyring::load(&settings.keys.dir)?;
            print!("{}", admin::keys::describe_versions(&ring));
        }
        Command::Keys(KeysCommand::Rotate { kind, escrow_out }) => {
            let kind = match kind {
                Kind::Escrow => KeyKind::Escrow,
                Kind::Relay => KeyKind::Relay,
                Kind::Pseudonym => KeyKind::Pseudonym,
                Kind::Vapid => KeyKind::Vapid,
            };
            if kind == KeyKind::Escrow && escrow_out.is_none() {
                bail!("keys rotate escrow needs --escrow-out FILE for the new escrow identity");
            }
            let out = escrow_out.unwrap_or_default();
            if kind == KeyKind::Escrow {
                refuse_escrow_on_gateway(&out, &settings.keys.dir)?;
            }
            let report = Keyring::rotate(&settings.keys.dir, kind, &out)?;
            print!("{}", admin::keys::describe_init(&report));
            println!("running gateways pick the new version up on restart");
            if let Some(warning) = admin::keys::rotation_warning(kind) {
                println!("{warning}");
            }
        }
        Command::Mediator(cmd) => {
            let directory = MediatorDirectory::new(admin::store(&settings)?);
            match cmd {
                MediatorCommand::Add {
                    name,
                    zone,
                    supervisor,
                    recipient,
                } => {
                    let new = admin::mediators::parse_new(
                        &settings, name, &zone, supervisor, &recipient,
                    )?;
                    let record = directory.add(new, clock::now_secs()).await?;
                    println!(
                        "enrolled {} ({}); new tips for its zones are sealed to it",
                        record.id, record.name
                    );
                }
                MediatorCommand::List => {
                    let devices = Devices::new(admin::store(&settings)?).list().await?;
                    print!(
                        "{}",
                        admin::mediators::describe(&directory.list().await?, &devices)
                    )
                }
                MediatorCommand::Remove { id } => {
                    let done = Offboarding::from_settings(&settings, admin::store(&settings)?)
                        .remove_person(&id)
                        .await
                        .with_context(|| format!("remove {id}"))?;
                    print!("{}", admin::mediators::describe_offboarded(&done));
                }
                MediatorCommand::Invite {
                    name,
                    zones,
                    supervisor,
                } => {
                    let zones = admin::mediators::parse_zones(&settings, &zones)?;
                    let invites = Invites::new(
                        admin::store(&settings)?,
                        settings.mediator.public_base_url.as_str(),
                        settings.mediator.invite_ttl,
                    );
                    let invite = invites
                        .create(&name, &zones, supervisor, invites.default_ttl())
                        .await?;
                    print!(
                        "{}",
                        admin::mediators::describe_invite(&invite, name.trim())
                    );
                }
                MediatorCommand::Devices => {
                    let devices = Devices::new(admin::store(&settings)?);
                    print!(
                        "{}",
                        admin::mediators::describe_devices(&devices.list().await?)
                    );
                }
                MediatorCommand::Revoke { device_id } => {
                    let id = DeviceId::parse(device_id.trim()).with_context(|| {
                        format!("{device_id:?}: a device id is what `tipwire mediator devices` lists (d_…)")
                    })?;
                    let done = Offboarding::from_settings(&settings, admin::store(&settings)?)
                        .revoke_device(&id)
                        .await
                        .with_context(|| format!("revoke {id}"))?;
                    print!("{}", admin::mediators::describe_offboarded(&done));
                }
            }
        }
        Command::Alerts(AlertsCommand::Tail {
            identity,
            from_start,
            count,
        }) => {
            let text = std::fs::read_to_string(&identity)
                .with_context(|| format!("--identity {}", identity.display()))?;
            let identities = IdentityKey::parse_file(&text);
            if identities.is_empty() {
                bail!(
                    "--identity {}: no age identity (AGE-SECRET-KEY-1…) in the file",
                    identity.display()
                );
            }
            let reader = AlertReader::new(admin::store(&settings)?);
            admin::alerts::tail(&reader, &identities, from_start, count, |s| {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(s.as_bytes());
                let _ = stdout.flush();
            })
            .await?;
        }
        Command::Export { out, since } => {
            let since = match since {
                Some(s) => {
                    admin::export::parse_since(&s, clock::now_secs()).with_context(|| {
                        format!(
                            "--since {s:?}: use unix seconds, an RFC 3339 time or an age like 7d"
                        )
                    })?
                }
                None => 0,
            };
            let reader = AlertReader::new(admin::store(&settings)?);
            let summary = admin::export::export(&reader, &out, since).await?;
            println!(
                "exported {} tips to {} ({} already there); open one with: age -d -i IDENTITY FILE.age",
                summary.written,
                out.display(),
                summary.skipped_existing
            );
        }
        Command::Purge { thread, before } => {
            let target = match (thread, before) {
                (Some(thread), _) => admin::purge::Target::Thread(
                    tipwire::domain::ThreadId::parse(&thread)
                        .context("--thread: a thread id is 32 lowercase hex digits")?,
                ),
                (None, Some(before)) => admin::purge::Target::Before(
                    admin::purge::parse_before(&before, clock::now_secs())
                        .map_err(anyhow::Error::msg)?,
                ),
                (None, None) => bail!("say what to purge: --thread ID or --before TIME"),
            };
            let store = admin::store(&settings)?;
            let purged = admin::purge::purge(&settings, &store, &target).await?;
            print!("{}", admin::purge::describe(&purged));
        }
        Command::Reply { thread, text } => {
            let thread = tipwire::domain::ThreadId::parse(&thread)
                .context("--thread: a thread id is 32 lowercase hex digits")?;
            let ring = Keyring::load(&settings.keys.dir)?;
            let store = admin::store(&settings)?;
            let id = tipwire::outbound::relay::enqueue(
                &store,
                &ring,
                &thread,
                &text,
                tipwire::outbound::relay::Kind::Reply,
            )
            .await?;
            println!("queued {id}; the reply relay sends it through the tipster's provider");
        }
        Command::Dev(DevCommand::Init { dir }) => {
            print!("{}", admin::dev::init(&settings, &dir).await?);
        }
    }
    Ok(())
}

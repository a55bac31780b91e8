//! `blob`: try Blob from a terminal, as the phone app would.
//!
//! ```text
//! blob login --email parent@example.com        # local mode (AUTH_PROVIDER=local)
//! blob child add Mia --grade 1
//! blob talk --wav utt1.wav --child Mia           # streams the file, prints what happens, timed
//! blob session show --child Mia
//! ```
//!
//! The gateway URL, the token and each child's session are kept in `$BLOB_CLI_STATE` (default
//! `~/.config/blob/cli.json`), so `talk` continues the same conversation from one run to the next.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blob_client::api::ApiError;
use blob_client::audio::read_wav;
use blob_client::protocol::ConversationState;
use blob_client::voice::{Pace, Received};
use blob_client::{Client, Error, Event, Message, Voice};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "blob", version, about = "Talk to Blob from a terminal")]
struct Cli {
    /// The gateway (default: the one `login` used, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "BLOB_GATEWAY")]
    gateway: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in: by email on a local gateway, or with a Firebase ID token.
    Login {
        /// The parent's email (local mode: the same email is always the same account).
        #[arg(long, required_unless_present = "firebase_token")]
        email: Option<String>,
        /// A Firebase ID token instead (any gateway).
        #[arg(long)]
        firebase_token: Option<String>,
    },
    /// The parent's children.
    Child {
        #[command(subcommand)]
        command: ChildCommand,
    },
    /// Stream a WAV file to Blob and print what happens, timed from the last word.
    Talk {
        /// 16 kHz mono 16-bit WAV.
        #[arg(long)]
        wav: PathBuf,
        /// The child who talks (added if missing).
        #[arg(long, default_value = "Mia")]
        child: String,
        /// Send the audio as fast as possible instead of in real time.
        #[arg(long)]
        fast: bool,
        /// Silence sent after the file, in milliseconds, or until Blob answers: the end of the
        /// turn needs some (up to the recogniser's 2 s backstop when it judges the turn
        /// unfinished).
        #[arg(long, default_value_t = 2500)]
        silence_ms: usize,
        /// Seconds to wait for Blob's answer after the audio.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Sessions.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
}

#[derive(Subcommand)]
enum ChildCommand {
    /// Add a child.
    Add {
        /// Name.
        name: String,
        /// School grade (0 = kindergarten).
        #[arg(long, default_value_t = 1)]
        grade: i32,
    },
    /// List the children.
    List,
}

#[derive(Subcommand)]
enum SessionCommand {
    /// The child's current session.
    Show {
        /// The child.
        #[arg(long, default_value = "Mia")]
        child: String,
    },
}

/// What the CLI keeps between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    gateway: Option<String>,
    token: Option<String>,
    email: Option<String>,
    /// By child id: the session and the highest message seq seen on it.
    #[serde(default)]
    sessions: std::collections::BTreeMap<String, (String, Option<u64>)>,
}

fn state_path() -> PathBuf {
    if let Ok(path) = std::env::var("BLOB_CLI_STATE") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".config/blob/cli.json")
}

impl State {
    fn load() -> Self {
        std::fs::read_to_string(state_path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = state_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // The file holds the parent's tokens: readable by its owner only, even if it existed.
        let text = serde_json::to_string_pretty(self)?;
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            file.write_all(text.as_bytes())
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

#[tokio::main]
async fn main() {
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("blob: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut state = State::load();
    let gateway = cli
        .gateway
        .or_else(|| state.gateway.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    match cli.command {
        Command::Login { email, firebase_token } => {
            let mut client = Client::new(&gateway);
            let signed_in = match (&email, firebase_token) {
                (_, Some(token)) => client.exchange(&token).await?,
                (Some(email), None) => client.local_sign_in(email).await?,
                (None, None) => bail!("--email or --firebase-token"),
            };
            println!(
                "signed in as {} ({} children)",
                signed_in.user["email"].as_str().unwrap_or_default(),
                signed_in.children.len()
            );
            if state.gateway.as_deref() != Some(gateway.as_str()) || state.email != email {
                state.sessions.clear();
            }
            state.gateway = Some(gateway);
            state.token = Some(signed_in.token);
            state.email = email;
            state.save()
        }
        Command::Child { command } => {
            let client = signed_in(&mut state, &gateway).await?;
            match command {
                ChildCommand::Add { name, grade } => {
                    let child = client.add_child(&name, grade).await?;
                    println!("{} {} ({})", child.child_id, child.name, child.grade_name);
                }
                ChildCommand::List => {
                    for child in client.children().await? {
                        println!(
                            "{} {} ({}, {})",
                            child.child_id,
                            child.name,
                            child.grade_name,
                            child.permission.as_deref().unwrap_or("manage")
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Session { command: SessionCommand::Show { child } } => {
            let client = signed_in(&mut state, &gateway).await?;
            let child = client.child_named(&child, 1).await?;
            let Some((session_id, last_seq)) = state.sessions.get(&child.child_id) else {
                bail!("{} has no session yet: `blob talk` opens one", child.name);
            };
            let session = client.session(session_id).await?;
            println!("{}", serde_json::to_string_pretty(&session)?);
            println!("last message seen: {last_seq:?}");
            Ok(())
        }
        Command::Talk { wav, child, fast, silence_ms, wait } => {
            let samples = read_wav(&wav)?;
            let client = signed_in(&mut state, &gateway).await?;
            let child = client.child_named(&child, 1).await?;
            let session = client.open_session(&child.child_id).await?;
            let last_seq = match state.sessions.get(&child.child_id) {
                Some((id, seq)) if *id == session.session_id => *seq,
                _ => None,
            };
            println!(
                "{}: session {} ({}), conversation {}",
                child.name, session.session_id, session.outcome, session.active_conversation_id
            );
            let mut voice = Voice::connect(&client, &session.session_id, last_seq).await?;
            let result =
                talk(&mut voice, &samples, fast, silence_ms, Duration::from_secs(wait)).await;
            state.sessions.insert(child.child_id, (session.session_id, voice.last_seq()));
            state.save()?;
            voice.close().await?;
            result
        }
    }
}

/// A client with the saved token; in local mode an expired one is renewed by email.
async fn signed_in(state: &mut State, gateway: &str) -> anyhow::Result<Client> {
    let token = state.token.clone().context("not signed in: run `blob login --email …` first")?;
    let client = Client::new(gateway).with_token(token);
    match client.children().await {
        Err(Error::Api(ApiError { code, .. })) if code == "TOKEN_EXPIRED" => {
            let email = state.email.clone().context("the token expired: log in again")?;
            let mut client = Client::new(gateway);
            let renewed = client.local_sign_in(&email).await?;
            state.token = Some(renewed.token);
            state.save()?;
            Ok(client)
        }
        Err(err) => Err(err.into()),
        Ok(_) => Ok(client),
    }
}

async fn talk(
    voice: &mut Voice,
    samples: &[i16],
    fast: bool,
    silence_ms: usize,
    wait: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut printer = Printer { started, last_word: None, done: false };
    let pace = if fast { Pace::Fast } else { Pace::RealTime };
    if let Some(code) = voice.send_audio(samples, 20, pace, |m| printer.print(m)).await? {
        bail!("the socket closed ({code:?})");
    }
    printer.last_word = Some(started.elapsed());
    println!("[{:>6} ms] (last word sent)", started.elapsed().as_millis());
    // Silence as a microphone sends it, in 100 ms steps, until the answer is complete.
    let step = vec![0i16; 1600];
    for _ in 0..silence_ms.div_ceil(100) {
        if printer.done {
            break;
        }
        if let Some(code) = voice.send_audio(&step, 20, pace, |m| printer.print(m)).await? {
            bail!("the socket closed ({code:?})");
        }
    }
    // Then until Blob's whole answer (or a rejection), or the wait is over.
    let until = Instant::now() + wait;
    let mut done = printer.done;
    while !done {
        let left = until.saturating_duration_since(Instant::now());
        match voice.next(left).await? {
            Some(Received::Message(message)) => {
                printer.print(&message);
                done = matches!(
                    message.event,
                    Event::Reply(_) | Event::SttRejected(_) | Event::Error(_)
                ) || message.event == Event::state(ConversationState::Idle);
            }
            Some(Received::Closed(code)) => bail!("the socket closed ({code:?})"),
            Some(Received::Unknown { .. }) => {}
            None => {
                println!("(nothing more within {} s)", wait.as_secs());
                break;
            }
        }
    }
    Ok(())
}

struct Printer {
    started: Instant,
    last_word: Option<Duration>,
    done: bool,
}

impl Printer {
    fn print(&mut self, message: &Message) {
        let at = self.started.elapsed();
        let since = match self.last_word {
            Some(last) if at >= last => {
                format!(" (+{} ms after the last word)", (at - last).as_millis())
            }
            _ => String::new(),
        };
        let at = at.as_millis();
        match &message.event {
            Event::AudioAck(_)
            | Event::Ping(_)
            | Event::Pong(_)
            | Event::Paused(_)
            | Event::Resumed(_)
            | Event::PlaybackProgress(_)
            | Event::TurnEnded(_) => {}
            Event::SessionCreated(_) => println!("[{at:>6} ms] new session"),
            Event::SessionResumed(resumed) => println!(
                "[{at:>6} ms] session resumed ({}): {} exchanges so far, {} replayed",
                resumed.reason,
                resumed.resumed_turns_count.unwrap_or(0),
                resumed.replayed.unwrap_or(0)
            ),
            Event::State(change) => println!("[{at:>6} ms] {}{since}", change.state),
            Event::SttResult(result) => println!(
                "[{at:>6} ms] heard: {:?} (confidence {:.2}){since}",
                result.transcript, result.confidence
            ),
            Event::SttRejected(rejected) => {
                println!(
                    "[{at:>6} ms] not used: {} ({} ms of speech){since}",
                    rejected.reason, rejected.duration_ms
                );
                self.done = true;
            }
            Event::ReplyChunk(chunk) => {
                println!("[{at:>6} ms] Blob, sentence {}: {}{since}", chunk.index, chunk.text)
            }
            Event::Reply(reply) => {
                println!(
                    "[{at:>6} ms] Blob: {} (voice {}){since}",
                    reply.text, reply.tts_hint.voice
                );
                self.done = true;
            }
            Event::ReplyCancelled(cancelled) => {
                println!("[{at:>6} ms] reply cancelled after {:?}", cancelled.sent_text)
            }
            Event::Error(error) => {
                println!("[{at:>6} ms] error {}: {}", error.code, error.message)
            }
            Event::SessionPaused(_) => println!("[{at:>6} ms] paused"),
        }
    }
}

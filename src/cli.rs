//! The `hearth` command line: the server and the operator's tools. Tools open the same
//! database `serve` uses, embedded or external, and work while the server runs.

use crate::config::Config;
use crate::error::Error;
use crate::rooms::RoomCtx;
use crate::rooms::send::RoomLocks;
use crate::server::{self, Opener};
use crate::signing_key::SigningKey;
use crate::users::{accounts, tokens};
use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use ruma::{OwnedUserId, ServerName, UserId};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "hearth", version, about = "Hearth, a Matrix homeserver on PostgreSQL")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the homeserver (with no configuration: `localhost` on 127.0.0.1:8008, data in
    /// ./hearth-data, a private PostgreSQL cluster managed by Hearth).
    Serve {
        /// TOML configuration file; `HEARTH_*` environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage registration tokens (for `registration.token_required`).
    RegistrationToken {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Operate the server: the admin API's main operations (accounts, rooms).
    Admin {
        #[command(subcommand)]
        command: crate::cli_admin::AdminCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values (secrets masked).
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; prints a generated password when none is given.
    Create {
        /// The localpart (`alice`) or the full user id (`@alice:example.org`).
        localpart: String,
        #[arg(long)]
        password: Option<String>,
        /// Make the account a server administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Set a new password (generated and printed when none is given); ends all sessions.
    ResetPassword {
        localpart: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make an account a creator (shown in its profile; creators receive tips), or with
    /// `--off` no longer one.
    Creator {
        localpart: String,
        #[arg(long)]
        off: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Close an account for good: sessions end, password and profile are erased.
    Deactivate {
        localpart: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; prints it.
    Create {
        /// The token text (default: 16 random characters).
        #[arg(long)]
        token: Option<String>,
        /// How many registrations it admits (default: unlimited).
        #[arg(long)]
        uses: Option<u32>,
        /// Expire the token after this many hours.
        #[arg(long)]
        expires_in_hours: Option<u64>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List tokens with their use counts.
    List {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Runs a tool command (everything but `serve`).
pub async fn run_tool(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => Err(anyhow!("`serve` is not a tool command")),
        Command::Config { command: ConfigCommand::Check { config } } => {
            let config = Config::load(config.as_deref())?;
            print!("{}", config.to_masked_toml());
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::User { command } => run_user(command).await,
        Command::RegistrationToken { command } => run_token(command).await,
        Command::Admin { command } => crate::cli_admin::run(command).await,
    }
}

async fn run_user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { localpart, password, admin, config } => {
            let config = Config::load(config.as_deref())?;
            let localpart = localpart_of(&localpart, &config)?;
            let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
            let pool = crate::store::Store::new(pool);
            let generated = password.is_none();
            let password = password.unwrap_or_else(|| tokens::random_alphanumeric(20));
            let server_name = server_name(&config)?;
            let result = accounts::create_account(&pool, &server_name, &localpart, &password, admin).await;
            pool.close().await;
            guard.shutdown().await?;
            let user_id = result.map_err(describe)?;
            println!("created {user_id}{}", if admin { " (admin)" } else { "" });
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UserCommand::ResetPassword { localpart, password, config } => {
            let config = Config::load(config.as_deref())?;
            let user_id = user_id_of(&localpart, &config)?;
            let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
            let pool = crate::store::Store::new(pool);
            let generated = password.is_none();
            let password = password.unwrap_or_else(|| tokens::random_alphanumeric(20));
            let result = accounts::reset_password(&pool, &user_id, &password).await;
            pool.close().await;
            guard.shutdown().await?;
            result.map_err(describe)?;
            println!("password of {user_id} reset; its sessions were ended");
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UserCommand::Creator { localpart, off, config } => {
            let config = Config::load(config.as_deref())?;
            let user_id = user_id_of(&localpart, &config)?;
            let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
            let pool = crate::store::Store::new(pool);
            let result = crate::creators::flag::set_creator(&pool, &user_id, !off).await;
            pool.close().await;
            guard.shutdown().await?;
            result.map_err(describe)?;
            println!("{user_id} is {}a creator", if off { "no longer " } else { "" });
            Ok(())
        }
        UserCommand::Deactivate { localpart, config } => {
            let config = Config::load(config.as_deref())?;
            let user_id = user_id_of(&localpart, &config)?;
            let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
            let pool = crate::store::Store::new(pool);
            let mut result = accounts::deactivate_now(&pool, &user_id, false).await;
            if result.is_ok() {
                // Like a deactivation through the API: the account leaves its rooms, with
                // events signed by this server's key.
                let key = SigningKey::load_or_generate(&config.data_dir.join("signing.key"))?;
                let server_name = server_name(&config)?;
                let locks = RoomLocks::default();
                let streams = crate::streams::Streams::start(&pool, Vec::new()).await?;
                let ctx =
                    RoomCtx { pool: &pool, server_name: &server_name, key: &key, locks: &locks, streams: &streams };
                result = crate::rooms::membership::leave_all(ctx, &user_id).await.map(|_| ());
            }
            pool.close().await;
            guard.shutdown().await?;
            result.map_err(describe)?;
            println!("deactivated {user_id}");
            Ok(())
        }
    }
}

async fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { token, uses, expires_in_hours, config } => {
            let config = Config::load(config.as_deref())?;
            let uses = uses.map(|uses| i32::try_from(uses).context("--uses is too large")).transpose()?;
            let expiry = expires_in_hours.map(|hours| crate::time::now_ms() + (hours as i64) * 3_600_000);
            let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
            let pool = crate::store::Store::new(pool);
            let result = accounts::create_registration_token(&pool, token.as_deref(), uses, expiry).await;
            pool.close().await;
            guard.shutdown().await?;
            println!("{}", result.map_err(describe)?);
            Ok(())
        }
        TokenCommand::List { config } => {
            let config = Config::load(config.as_deref())?;
            let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
            let pool = crate::store::Store::new(pool);
            let result = crate::db::registration::list_tokens(&pool).await;
            pool.close().await;
            guard.shutdown().await?;
            for token in result? {
                let uses = token.uses_allowed.map_or("unlimited".to_owned(), |n| n.to_string());
                let expiry = token.expiry_ts.map_or("never".to_owned(), |ts| ts.to_string());
                println!("{}\tused {}/{uses}\texpires {expiry}", token.token, token.completed);
            }
            Ok(())
        }
    }
}

fn server_name(config: &Config) -> anyhow::Result<ruma::OwnedServerName> {
    ServerName::parse(&config.server_name).map_err(|error| anyhow!("`server_name`: {error}"))
}

/// Accepts `alice` or `@alice:server` (which must be on this server).
fn localpart_of(input: &str, config: &Config) -> anyhow::Result<String> {
    match input.strip_prefix('@') {
        Some(rest) => {
            let (localpart, server) = rest.split_once(':').ok_or_else(|| anyhow!("{input:?} is not a user id"))?;
            if server != config.server_name {
                return Err(anyhow!("{input} is not on this server ({})", config.server_name));
            }
            Ok(localpart.to_owned())
        }
        None => Ok(input.to_owned()),
    }
}

fn user_id_of(input: &str, config: &Config) -> anyhow::Result<OwnedUserId> {
    let localpart = localpart_of(input, config)?;
    UserId::parse(format!("@{localpart}:{}", config.server_name)).map_err(|error| anyhow!("invalid user id: {error}"))
}

fn describe(error: Error) -> anyhow::Error {
    match error {
        Error::Matrix { message, kind, .. } => anyhow!("{message} ({})", kind.errcode()),
        other => anyhow!("{other}"),
    }
}

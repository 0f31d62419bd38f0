//! `hearth admin …`: the admin API's main operations from the command line, through the same
//! domain functions (`crate::admin`), on the database the server uses (embedded or external),
//! beside a running server. Every change is written to the audit log as done by the operator.

use crate::admin::room_deletion::{self, ShutdownRequest};
use crate::admin::rooms::{self, RoomOrder};
use crate::admin::users::{self, AccountFilter, AccountOrder, Paging, UserChanges};
use crate::config::Config;
use crate::error::Error;
use crate::rooms::RoomCtx;
use crate::rooms::send::RoomLocks;
use crate::server::{self, DatabaseGuard, Opener};
use crate::signing_key::SigningKey;
use crate::store::Store;
use crate::streams::Streams;
use crate::users::actor::Actor;
use anyhow::anyhow;
use clap::Subcommand;
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomVersionId, ServerName};
use std::path::PathBuf;

/// The audit log's request id for what the command line does.
const CLI: &str = "cli";

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List accounts: name, admin, deactivated, locked.
    Users {
        /// Only accounts whose localpart or display name contains this.
        #[arg(long)]
        search: Option<String>,
        /// Include deactivated accounts.
        #[arg(long)]
        deactivated: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make an account a server admin (with --revoke: no longer one).
    SetAdmin {
        user: String,
        #[arg(long)]
        revoke: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Lock an account: every session and login answers M_USER_LOCKED (with --unlock: unlock).
    Lock {
        user: String,
        #[arg(long)]
        unlock: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List rooms: id, name, joined members.
    Rooms {
        /// Only rooms whose name, canonical alias or id contains this.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Block a room: local users can neither join nor be invited (with --unblock: unblock).
    BlockRoom {
        room_id: OwnedRoomId,
        #[arg(long)]
        unblock: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Shut a room down: every local member leaves and forgets it; its local aliases go (or
    /// move to the replacement room).
    DeleteRoom {
        room_id: OwnedRoomId,
        /// Also block the room.
        #[arg(long)]
        block: bool,
        /// Create a replacement room owned by this local user and move the members there.
        #[arg(long)]
        new_room_user: Option<OwnedUserId>,
        /// The replacement room's first message.
        #[arg(long)]
        message: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// What the commands need open: the database, and what room operations sign and lock with.
struct Tools {
    pool: Store,
    guard: DatabaseGuard,
    server_name: OwnedServerName,
    key: SigningKey,
    locks: RoomLocks,
    streams: Streams,
    default_version: RoomVersionId,
}

impl Tools {
    async fn open(config: Option<PathBuf>) -> anyhow::Result<Tools> {
        let config = Config::load(config.as_deref())?;
        let server_name = ServerName::parse(&config.server_name).map_err(|error| anyhow!("`server_name`: {error}"))?;
        let default_version = RoomVersionId::try_from(config.rooms.default_version.as_str())
            .map_err(|error| anyhow!("`rooms.default_version`: {error}"))?;
        let key = SigningKey::load_or_generate(&config.data_dir.join("signing.key"))?;
        let (pool, guard) = server::open_database(&config, Opener::Tool).await?;
        let streams = Streams::start(&pool, Vec::new()).await?;
        Ok(Tools { pool: pool.into(), guard, server_name, key, locks: RoomLocks::default(), streams, default_version })
    }

    fn rooms(&self) -> RoomCtx<'_> {
        RoomCtx {
            pool: &self.pool,
            server_name: &self.server_name,
            key: &self.key,
            locks: &self.locks,
            streams: &self.streams,
        }
    }

    fn user(&self, input: &str) -> anyhow::Result<OwnedUserId> {
        let user_id = match input.strip_prefix('@') {
            Some(_) => input.to_owned(),
            None => format!("@{input}:{}", self.server_name),
        };
        crate::admin::local_user(&self.server_name, &user_id).map_err(describe)
    }

    async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.guard.shutdown().await
    }
}

fn describe(error: Error) -> anyhow::Error {
    match error {
        Error::Matrix { message, kind, .. } => anyhow!("{message} ({})", kind.errcode()),
        other => anyhow!("{other}"),
    }
}

pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Users { search, deactivated, limit, config } => {
            let tools = Tools::open(config).await?;
            let filter = AccountFilter {
                user_id: None,
                name: search.as_deref(),
                include_guests: true,
                // `--deactivated` lists them beside the active accounts.
                deactivated: if deactivated { None } else { Some(false) },
                include_locked: true,
                admins: None,
            };
            let paging = Paging::new(None, Some(limit), 100).map_err(describe);
            let page = match paging {
                Ok(paging) => {
                    users::list(&tools.pool, &filter, AccountOrder::Name, false, paging).await.map_err(describe)
                }
                Err(error) => Err(error),
            };
            tools.close().await?;
            let page = page?;
            for account in &page.items {
                let flags =
                    [(account.is_admin, "admin"), (account.deactivated, "deactivated"), (account.locked, "locked")];
                let flags: Vec<&str> = flags.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect();
                println!("{}\t{}", account.user_id, flags.join(","));
            }
            println!("{} of {} accounts", page.items.len(), page.total);
            Ok(())
        }
        AdminCommand::SetAdmin { user, revoke, config } => {
            let tools = Tools::open(config).await?;
            let user_id = tools.user(&user);
            let result = match &user_id {
                Ok(user_id) => users::set_admin(&tools.pool, Actor::Operator, user_id, !revoke).await.map_err(describe),
                Err(error) => Err(anyhow!("{error}")),
            };
            tools.close().await?;
            result?;
            let user_id = user_id?;
            crate::admin::audit(
                Actor::Operator,
                if revoke { "revoke admin" } else { "make admin" },
                user_id.as_str(),
                CLI,
            );
            println!("{user_id} is {}a server admin", if revoke { "no longer " } else { "" });
            Ok(())
        }
        AdminCommand::Lock { user, unlock, config } => {
            let tools = Tools::open(config).await?;
            let user_id = tools.user(&user);
            let result = match &user_id {
                Ok(user_id) => {
                    let changes = UserChanges { locked: Some(!unlock), ..UserChanges::default() };
                    users::get(&tools.pool, user_id).await.map_err(describe).map(drop)?;
                    users::create_or_modify(tools.rooms(), user_id, changes, Actor::Operator)
                        .await
                        .map_err(describe)
                        .map(drop)
                }
                Err(error) => Err(anyhow!("{error}")),
            };
            tools.close().await?;
            result?;
            let user_id = user_id?;
            crate::admin::audit(
                Actor::Operator,
                if unlock { "unlock user" } else { "lock user" },
                user_id.as_str(),
                CLI,
            );
            println!("{user_id} is {}", if unlock { "unlocked" } else { "locked" });
            Ok(())
        }
        AdminCommand::Rooms { search, limit, config } => {
            let tools = Tools::open(config).await?;
            let page = match Paging::new(None, Some(limit), 100) {
                Ok(paging) => {
                    let search = search.as_deref();
                    rooms::list(&tools.pool, &tools.server_name, search, RoomOrder::Name, false, paging).await
                }
                Err(error) => Err(error),
            };
            tools.close().await?;
            let page = page.map_err(describe)?;
            for room in &page.items {
                let name = room.name.as_deref().unwrap_or("-");
                println!("{}\t{name}\t{} joined", room.room_id, room.joined_members);
            }
            println!("{} of {} rooms", page.items.len(), page.total);
            Ok(())
        }
        AdminCommand::BlockRoom { room_id, unblock, config } => {
            let tools = Tools::open(config).await?;
            let result = rooms::set_blocked(&tools.pool, &room_id, Actor::Operator, !unblock).await;
            tools.close().await?;
            result.map_err(describe)?;
            crate::admin::audit(
                Actor::Operator,
                if unblock { "unblock room" } else { "block room" },
                room_id.as_str(),
                CLI,
            );
            println!("{room_id} is {}", if unblock { "unblocked" } else { "blocked" });
            Ok(())
        }
        AdminCommand::DeleteRoom { room_id, block, new_room_user, message, config } => {
            let tools = Tools::open(config).await?;
            let request =
                ShutdownRequest { new_room_user_id: new_room_user, message, block, ..ShutdownRequest::default() };
            let outcome = delete_room(&tools, &room_id, request).await;
            tools.close().await?;
            let outcome = outcome?;
            println!("{outcome}");
            Ok(())
        }
    }
}

/// Runs a room shutdown to its end (here, not in the background) and gives its outcome.
async fn delete_room(tools: &Tools, room_id: &ruma::RoomId, request: ShutdownRequest) -> anyhow::Result<String> {
    let delete_id =
        room_deletion::schedule(tools.rooms(), room_id, &request, Actor::Operator).await.map_err(describe)?;
    crate::admin::audit(Actor::Operator, "delete room", &format!("{room_id} (task {delete_id})"), CLI);
    room_deletion::run(
        tools.rooms(),
        &tools.default_version,
        &delete_id,
        room_id,
        request,
        &Actor::Operator.describe(),
    )
    .await;
    let deletion = room_deletion::status(tools.rooms(), &delete_id).await.map_err(describe)?;
    let outcome = deletion.outcome.map(|outcome| outcome.to_string()).unwrap_or_default();
    match deletion.error {
        Some(error) => Err(anyhow!("the shutdown failed: {error}")),
        None => Ok(format!("{}: {outcome}", deletion.status)),
    }
}

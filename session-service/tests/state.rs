//! The session-service over real gRPC, with its own redis-server and an embedded SQLite cold
//! store: concurrency, the state bugs that must never come back, permissions, erasure and a
//! Redis restart.

use std::sync::Arc;
use std::time::Duration;

use blob_kit::config::EnvReader;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::families_client::FamiliesClient;
use blob_proto::session::v1::lessons_client::LessonsClient;
use blob_proto::session::v1::sessions_client::SessionsClient;
use blob_testkit::redis::RedisServer;
use session_service::cold::{ColdStore as _, SqliteColdStore};
use session_service::{Application, Config};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Clients of the service's gRPC services (the edge guard is exercised end to end).
#[derive(Clone)]
struct Client {
    families: FamiliesClient<Channel>,
    sessions: SessionsClient<Channel>,
    lessons: LessonsClient<Channel>,
}

impl Client {
    fn new(channel: Channel) -> Self {
        Self {
            families: FamiliesClient::new(channel.clone()),
            sessions: SessionsClient::new(channel.clone()),
            lessons: LessonsClient::new(channel),
        }
    }
}

struct Service {
    client: Client,
    redis: RedisServer,
    dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Service {
    async fn start() -> Self {
        let redis = RedisServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite3");
        let config = Config::from_reader(EnvReader::from_pairs([
            ("SESSION_GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
            ("REDIS_URL", redis.url()),
            ("COLD_STORE", "embedded".to_owned()),
            ("EMBEDDED_STORE_PATH", db.display().to_string()),
        ]))
        .unwrap();
        let app = Application::build(config).await.unwrap();
        let addr = app.local_addr();
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(app.run_until_stopped(async move { until.cancelled().await }));
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await;
        Self { client: Client::new(channel.unwrap()), redis, dir, stop }
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// The cold store's file, opened beside the service (WAL allows it).
    async fn cold(&self) -> SqliteColdStore {
        SqliteColdStore::open(self.dir.path().join("state.sqlite3")).await.unwrap()
    }

    async fn user(&self, user_id: &str) {
        let request = pb::UpsertUserRequest {
            user_id: user_id.into(),
            email: format!("{user_id}@example.com"),
            display_name: user_id.into(),
        };
        self.client().families.upsert_user(request).await.unwrap();
    }

    async fn child(&self, user_id: &str, name: &str) -> String {
        let request = pb::CreateChildRequest {
            user_id: user_id.into(),
            name: name.into(),
            grade_level: 1,
            ..Default::default()
        };
        let access = self.client().families.create_child(request).await.unwrap().into_inner();
        access.child.unwrap().child_id
    }

    async fn open(
        &self,
        user_id: &str,
        child_id: &str,
    ) -> Result<pb::OpenSessionResponse, tonic::Status> {
        let request = pb::OpenSessionRequest {
            user_id: user_id.into(),
            child_id: child_id.into(),
            mode: String::new(),
            conversation_id: String::new(),
        };
        self.client().sessions.open_session(request).await.map(|r| r.into_inner())
    }

    async fn attach(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<pb::AttachSessionResponse, tonic::Status> {
        let request = pb::AttachSessionRequest {
            session_id: session_id.into(),
            user_id: user_id.into(),
            replay_after_seq: None,
        };
        self.client().sessions.attach_session(request).await.map(|r| r.into_inner())
    }

    async fn append(
        &self,
        user_id: &str,
        session_id: &str,
        text: &str,
    ) -> Result<u32, tonic::Status> {
        let request = pb::AppendTurnsRequest {
            session_id: session_id.into(),
            user_id: user_id.into(),
            turns: vec![pb::ConversationTurn {
                request_id: text.into(),
                user_text: text.into(),
                assistant_text: format!("Blob heard {text}"),
                created_at_ms: 0,
                interrupted: false,
            }],
            pause_profile: None,
        };
        self.client().sessions.append_turns(request).await.map(|r| r.into_inner().turn_count)
    }

    async fn suspend(
        &self,
        user_id: &str,
        session_id: &str,
        epoch: u32,
    ) -> Result<pb::Session, tonic::Status> {
        let request =
            pb::SessionRef { session_id: session_id.into(), user_id: user_id.into(), epoch };
        self.client().sessions.suspend_session(request).await.map(|r| r.into_inner())
    }

    async fn turns(&self, user_id: &str, conversation_id: &str) -> Vec<pb::ConversationTurn> {
        let request = pb::GetConversationRequest {
            conversation_id: conversation_id.into(),
            user_id: user_id.into(),
        };
        self.client().sessions.get_conversation(request).await.unwrap().into_inner().turns
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn child_ref(user_id: &str, child_id: &str) -> pb::ChildRef {
    pb::ChildRef { user_id: user_id.into(), child_id: child_id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_parallel_opens_for_one_child_make_one_session() {
    let service = Arc::new(Service::start().await);
    service.user("parent").await;
    let child = service.child("parent", "Mia").await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (service, child) = (Arc::clone(&service), child.clone());
        tasks.push(tokio::spawn(async move { service.open("parent", &child).await.unwrap() }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for task in tasks {
        let opened = task.await.unwrap();
        ids.insert(opened.session.unwrap().session_id);
        created += usize::from(opened.outcome == pb::OpenOutcome::Created as i32);
    }
    assert_eq!(ids.len(), 1, "one session for one child");
    assert_eq!(created, 1, "created exactly once, discovered 99 times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_appends_keep_fifty_turns() {
    let service = Arc::new(Service::start().await);
    service.user("parent").await;
    let child = service.child("parent", "Leo").await;
    let session = service.open("parent", &child).await.unwrap().session.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (service, id) = (Arc::clone(&service), session.session_id.clone());
        tasks.push(tokio::spawn(async move {
            service.append("parent", &id, &format!("turn {i}")).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let turns = service.turns("parent", &session.conversation_id).await;
    assert_eq!(turns.len(), 50);
    let mut texts: Vec<String> = turns.into_iter().map(|t| t.user_text).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 50, "every turn once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_racing_appends_lose_nothing() {
    let service = Arc::new(Service::start().await);
    service.user("parent").await;
    let child = service.child("parent", "Ada").await;
    let session = service.open("parent", &child).await.unwrap().session.unwrap();
    let id = session.session_id.clone();

    let appends = {
        let (service, id) = (Arc::clone(&service), id.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                service.append("parent", &id, &format!("turn {i}")).await.unwrap();
            }
        })
    };
    let flips = {
        let (service, id) = (Arc::clone(&service), id.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                let attached = service.attach("parent", &id).await.unwrap();
                service.suspend("parent", &id, attached.epoch).await.unwrap();
            }
        })
    };
    appends.await.unwrap();
    flips.await.unwrap();
    let attached = service.attach("parent", &id).await.unwrap();
    assert_eq!(attached.turns.len(), 40, "no append lost to a transition");
    assert_eq!(attached.session.unwrap().session_id, id);
}

/// Seed bug: closing the socket deleted the session instead of suspending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_suspends_and_never_deletes() {
    let service = Service::start().await;
    service.user("parent").await;
    let child = service.child("parent", "Noa").await;
    let session = service.open("parent", &child).await.unwrap().session.unwrap();
    let attached = service.attach("parent", &session.session_id).await.unwrap();
    service.append("parent", &session.session_id, "hello Blob").await.unwrap();
    let suspended = service.suspend("parent", &session.session_id, attached.epoch).await.unwrap();
    assert_eq!(suspended.state, pb::SessionState::Suspended as i32);

    let request = pb::GetSessionRequest { session_id: session.session_id.clone() };
    let stored = service.client().sessions.get_session(request).await.unwrap().into_inner();
    assert_eq!(stored.state, pb::SessionState::Suspended as i32, "still there, suspended");
    assert_eq!(service.turns("parent", &session.conversation_id).await.len(), 1);
}

/// The child's pauses travel with the conversation: an append with a profile replaces them, one
/// without leaves them, the next socket gets them back, and an oversized profile is refused
/// without losing the turn count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_profile_is_kept_with_the_conversation() {
    let service = Service::start().await;
    service.user("parent").await;
    let child = service.child("parent", "Pip").await;
    let session = service.open("parent", &child).await.unwrap().session.unwrap();
    let attached = service.attach("parent", &session.session_id).await.unwrap();
    assert_eq!(attached.pause_profile.unwrap().pauses_ms, Vec::<u32>::new());
    let append = |pauses: Option<Vec<u32>>, text: &str| pb::AppendTurnsRequest {
        session_id: session.session_id.clone(),
        user_id: "parent".into(),
        turns: vec![pb::ConversationTurn {
            request_id: text.into(),
            user_text: text.into(),
            assistant_text: "ok".into(),
            created_at_ms: 0,
            interrupted: false,
        }],
        pause_profile: pauses.map(|pauses_ms| pb::PauseProfile { pauses_ms }),
    };
    let mut client = service.client();
    client.sessions.append_turns(append(Some(vec![300, 1200, 450]), "one")).await.unwrap();
    client.sessions.append_turns(append(None, "two")).await.unwrap();
    let refused =
        client.sessions.append_turns(append(Some(vec![100; 33]), "three")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    service.suspend("parent", &session.session_id, attached.epoch).await.unwrap();

    let again = service.attach("parent", &session.session_id).await.unwrap();
    assert_eq!(again.pause_profile.unwrap().pauses_ms, vec![300, 1200, 450]);
    assert_eq!(again.turns.len(), 2);
}

/// Seed bug: every socket got a new session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_keeps_the_session_id() {
    let service = Service::start().await;
    service.user("parent").await;
    let child = service.child("parent", "Ivy").await;
    let first = service.open("parent", &child).await.unwrap().session.unwrap();
    let attached = service.attach("parent", &first.session_id).await.unwrap();
    service.suspend("parent", &first.session_id, attached.epoch).await.unwrap();

    let reopened = service.open("parent", &child).await.unwrap();
    assert_eq!(reopened.outcome, pb::OpenOutcome::Resumed as i32);
    assert_eq!(reopened.session.as_ref().unwrap().session_id, first.session_id);
    let again = service.attach("parent", &first.session_id).await.unwrap();
    assert_eq!(again.session.unwrap().session_id, first.session_id);
    assert!(again.epoch > attached.epoch, "a newer socket gets a newer epoch");
}

/// Seed bug: the conversation was not reloaded when the app reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_reloads_the_conversation() {
    let service = Service::start().await;
    service.user("parent").await;
    let child = service.child("parent", "Zoe").await;
    let session = service.open("parent", &child).await.unwrap().session.unwrap();
    let attached = service.attach("parent", &session.session_id).await.unwrap();
    for text in ["my cat is Tom", "he is orange"] {
        service.append("parent", &session.session_id, text).await.unwrap();
    }
    service.suspend("parent", &session.session_id, attached.epoch).await.unwrap();

    let back = service.attach("parent", &session.session_id).await.unwrap();
    assert!(back.resumed);
    let texts: Vec<&str> = back.turns.iter().map(|t| t.user_text.as_str()).collect();
    assert_eq!(texts, ["my cat is Tom", "he is orange"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sessions_conversation_is_reattached_only_by_its_family_and_child() {
    let service = Service::start().await;
    for user in ["parent", "other"] {
        service.user(user).await;
    }
    let child = service.child("parent", "Zoe").await;
    let sibling = service.child("parent", "Max").await;
    let strangers = service.child("other", "Kim").await;
    let first = service.open("parent", &child).await.unwrap().session.unwrap();
    service.append("parent", &first.session_id, "my cat is Tom").await.unwrap();
    let reattach = |user_id: &str, child_id: &str, conversation_id: &str| pb::OpenSessionRequest {
        user_id: user_id.into(),
        child_id: child_id.into(),
        mode: String::new(),
        conversation_id: conversation_id.into(),
    };
    let mut client = service.client();

    // While the session lives, it is answered with its own conversation.
    let other = service.open("parent", &sibling).await.unwrap().session.unwrap();
    let live = client
        .sessions
        .open_session(reattach("parent", &child, &first.conversation_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.outcome, pb::OpenOutcome::Discovered as i32);
    assert_eq!(live.session.unwrap().session_id, first.session_id);

    let end =
        pb::SessionRef { session_id: first.session_id.clone(), user_id: "parent".into(), epoch: 0 };
    client.sessions.end_session(end).await.unwrap();
    for (request, code) in [
        (reattach("parent", &sibling, &first.conversation_id), Code::PermissionDenied),
        (reattach("other", &strangers, &first.conversation_id), Code::NotFound),
        (reattach("parent", &child, &other.conversation_id), Code::PermissionDenied),
        (reattach("parent", &child, "no-such-conversation"), Code::NotFound),
        (reattach("parent", &child, "a/b"), Code::InvalidArgument),
    ] {
        let err = client.sessions.open_session(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }

    let back =
        client.sessions.open_session(reattach("parent", &child, &first.conversation_id)).await;
    let back = back.unwrap().into_inner();
    assert_eq!(back.outcome, pb::OpenOutcome::Reattached as i32);
    let session = back.session.unwrap();
    assert_ne!(session.session_id, first.session_id);
    assert_eq!(session.conversation_id, first.conversation_id);
    let attached = service.attach("parent", &session.session_id).await.unwrap();
    assert!(attached.resumed, "the earlier exchange makes it a continuation");
    assert_eq!(attached.turns.len(), 1);
    service.append("parent", &session.session_id, "he is orange").await.unwrap();
    let request = pb::GetConversationRequest {
        conversation_id: first.conversation_id.clone(),
        user_id: "parent".into(),
    };
    let conversation = client.sessions.get_conversation(request).await.unwrap().into_inner();
    assert_eq!(conversation.turns.len(), 2);
    assert_eq!((conversation.session_id, conversation.child_id), (session.session_id, child));
    assert_eq!(conversation.status, "active");
    assert!(
        conversation.created_at_ms > 0
            && conversation.last_activity_at_ms >= conversation.created_at_ms
    );
}

/// Seed bug: permissions were read from the token's claims, so a revoked parent kept access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_link_stops_access_at_once() {
    let service = Service::start().await;
    service.user("mum").await;
    service.user("nan").await;
    let child = service.child("mum", "Eli").await;
    let grant = pb::GrantPermissionRequest {
        user_id: "mum".into(),
        child_id: child.clone(),
        grantee_user_id: "nan".into(),
        permission: pb::Permission::Interact as i32,
        ..Default::default()
    };
    service.client().families.grant_permission(grant).await.unwrap();
    let session = service.open("nan", &child).await.unwrap().session.unwrap();
    service.attach("nan", &session.session_id).await.unwrap();

    let revoke = pb::RevokePermissionRequest {
        user_id: "mum".into(),
        child_id: child.clone(),
        grantee_user_id: "nan".into(),
        ..Default::default()
    };
    assert!(
        service.client().families.revoke_permission(revoke).await.unwrap().into_inner().revoked
    );

    let err = service.open("nan", &child).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = service.attach("nan", &session.session_id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the revoked user's session ended: {err:?}");
    let get = pb::GetChildRequest { user_id: "nan".into(), child_id: child.clone() };
    assert_eq!(service.client().families.get_child(get).await.unwrap_err().code(), Code::NotFound);
    let list = pb::ListChildrenRequest { user_id: "nan".into() };
    assert!(
        service
            .client()
            .families
            .list_children(list)
            .await
            .unwrap()
            .into_inner()
            .children
            .is_empty()
    );
    // Mum keeps hers, and the ended session was archived.
    service.open("mum", &child).await.unwrap();
    let archived = service.cold().await.list_archived_sessions(&child).await.unwrap();
    assert_eq!(archived.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_rank_manage_over_interact_over_view() {
    let service = Service::start().await;
    for user_id in ["owner", "viewer", "talker", "stranger"] {
        service.user(user_id).await;
    }
    let child = service.child("owner", "Kit").await;
    for (user_id, permission) in
        [("viewer", pb::Permission::View), ("talker", pb::Permission::Interact)]
    {
        let grant = pb::GrantPermissionRequest {
            user_id: "owner".into(),
            child_id: child.clone(),
            grantee_user_id: user_id.into(),
            permission: permission as i32,
            ..Default::default()
        };
        service.client().families.grant_permission(grant).await.unwrap();
    }
    let mut client = service.client();
    let get =
        |user_id: &str| pb::GetChildRequest { user_id: user_id.into(), child_id: child.clone() };
    let viewed = client.families.get_child(get("viewer")).await.unwrap().into_inner();
    assert_eq!(viewed.permission, pb::Permission::View as i32);
    client.lessons.list_progress(child_ref("viewer", &child)).await.unwrap();
    assert_eq!(service.open("viewer", &child).await.unwrap_err().code(), Code::PermissionDenied);
    service.open("talker", &child).await.unwrap();
    let rename = |user_id: &str| pb::UpdateChildRequest {
        user_id: user_id.into(),
        child_id: child.clone(),
        name: Some("Kitty".into()),
        ..Default::default()
    };
    assert_eq!(
        client.families.update_child(rename("talker")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let grant = pb::GrantPermissionRequest {
        user_id: "talker".into(),
        child_id: child.clone(),
        grantee_user_id: "stranger".into(),
        permission: pb::Permission::Manage as i32,
        ..Default::default()
    };
    assert_eq!(
        client.families.grant_permission(grant).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let renamed = client.families.update_child(rename("owner")).await.unwrap().into_inner();
    assert_eq!(renamed.child.unwrap().name, "Kitty");
    // Another family sees nothing, not even that the child exists.
    assert_eq!(
        client.families.get_child(get("stranger")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(service.open("stranger", &child).await.unwrap_err().code(), Code::NotFound);
    let erase = child_ref("stranger", &child);
    assert_eq!(client.families.erase_child_data(erase).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_child_removes_hot_and_cold_state_with_a_receipt() {
    let service = Service::start().await;
    service.user("mum").await;
    service.user("dad").await;
    let child = service.child("mum", "Ren").await;
    let sibling = service.child("mum", "Sol").await;
    let grant = pb::GrantPermissionRequest {
        user_id: "mum".into(),
        child_id: child.clone(),
        grantee_user_id: "dad".into(),
        permission: pb::Permission::Manage as i32,
        ..Default::default()
    };
    service.client().families.grant_permission(grant).await.unwrap();
    // One ended (archived) session and one live one, each with a conversation.
    let first = service.open("mum", &child).await.unwrap().session.unwrap();
    service.append("mum", &first.session_id, "first").await.unwrap();
    let end =
        pb::SessionRef { session_id: first.session_id.clone(), user_id: "mum".into(), epoch: 0 };
    service.client().sessions.end_session(end).await.unwrap();
    let second = service.open("mum", &child).await.unwrap().session.unwrap();
    assert_ne!(second.session_id, first.session_id);
    service.append("mum", &second.session_id, "second").await.unwrap();
    let progress = pb::RecordProgressRequest {
        user_id: "mum".into(),
        child_id: child.clone(),
        lesson_id: "counting-to-ten".into(),
        update: Some(pb::record_progress_request::Update::Started(true)),
    };
    service.client().lessons.record_progress(progress).await.unwrap();
    let sibling_session = service.open("mum", &sibling).await.unwrap().session.unwrap();
    service.append("mum", &sibling_session.session_id, "sibling").await.unwrap();

    let receipt = service
        .client()
        .families
        .erase_child_data(child_ref("dad", &child))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (receipt.children, receipt.family_links, receipt.progress, receipt.archived_sessions),
        (1, 2, 1, 1)
    );
    assert_eq!((receipt.hot_sessions, receipt.conversations), (1, 2));
    assert!(receipt.erased_at_ms > 0);

    for user_id in ["mum", "dad"] {
        let get = pb::GetChildRequest { user_id: user_id.into(), child_id: child.clone() };
        assert_eq!(
            service.client().families.get_child(get).await.unwrap_err().code(),
            Code::NotFound
        );
    }
    let request = pb::GetSessionRequest { session_id: second.session_id.clone() };
    assert_eq!(
        service.client().sessions.get_session(request).await.unwrap_err().code(),
        Code::NotFound
    );
    for conversation in [&first.conversation_id, &second.conversation_id] {
        let request = pb::GetConversationRequest {
            conversation_id: conversation.clone(),
            user_id: "mum".into(),
        };
        let gone = service.client().sessions.get_conversation(request).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "no turn is left");
    }
    let cold = service.cold().await;
    assert!(cold.list_progress(&child).await.unwrap().is_empty());
    assert!(cold.list_archived_sessions(&child).await.unwrap().is_empty());
    // The sibling keeps everything.
    assert_eq!(service.turns("mum", &sibling_session.conversation_id).await.len(), 1);
    let get = pb::GetChildRequest { user_id: "mum".into(), child_id: sibling.clone() };
    service.client().families.get_child(get).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_finds_the_conversations_of_expired_sessions_through_the_childs_index() {
    let service = Service::start().await;
    service.user("mum").await;
    let child = service.child("mum", "Pip").await;
    let sibling = service.child("mum", "Kit").await;
    let first = service.open("mum", &child).await.unwrap().session.unwrap();
    service.append("mum", &first.session_id, "pineapple").await.unwrap();
    service.suspend("mum", &first.session_id, 0).await.unwrap();
    // The index lives at least as long as what it names.
    let ttl = |key: String| service.redis.cli(&["TTL", &key]).trim().parse::<i64>().unwrap();
    let index_ttl = ttl(format!("child_keys:{child}"));
    assert!(index_ttl >= ttl(format!("conversation:{}", first.conversation_id)), "{index_ttl}");
    assert!(index_ttl >= ttl(format!("suspended:{}", first.session_id)), "{index_ttl}");
    // The reconnect window passes: the session's keys expire, the conversation stays.
    service.redis.cli(&[
        "DEL",
        &format!("suspended:{}", first.session_id),
        &format!("child_session:{child}"),
    ]);
    let gone = pb::GetSessionRequest { session_id: first.session_id.clone() };
    assert_eq!(
        service.client().sessions.get_session(gone).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(service.turns("mum", &first.conversation_id).await.len(), 1);
    // A second session, never ended, whose turn is also kept; and the sibling's.
    let second = service.open("mum", &child).await.unwrap().session.unwrap();
    service.append("mum", &second.session_id, "pineapple again").await.unwrap();
    let kept = service.open("mum", &sibling).await.unwrap().session.unwrap();
    service.append("mum", &kept.session_id, "banana").await.unwrap();

    let receipt = service
        .client()
        .families
        .erase_child_data(child_ref("mum", &child))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((receipt.conversations, receipt.hot_sessions), (2, 1), "{receipt:?}");
    for conversation in [&first.conversation_id, &second.conversation_id] {
        let request = pb::GetConversationRequest {
            conversation_id: conversation.clone(),
            user_id: "mum".into(),
        };
        let gone = service.client().sessions.get_conversation(request).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
    assert_eq!(service.redis.keys_holding("pineapple"), Vec::<String>::new());
    assert_eq!(service.redis.keys_holding(&child), Vec::<String>::new());
    assert_eq!(service.turns("mum", &kept.conversation_id).await.len(), 1, "the sibling's stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_record_keeps_its_newest_turns_within_a_count_and_a_size() {
    let service = Service::start().await;
    service.user("mum").await;
    let child = service.child("mum", "Lou").await;
    let session = service.open("mum", &child).await.unwrap().session.unwrap();
    for i in 0..205 {
        service.append("mum", &session.session_id, &format!("turn-{i}")).await.unwrap();
    }
    let turns = service.turns("mum", &session.conversation_id).await;
    assert_eq!(turns.len(), session_service::hot::MAX_CONVERSATION_TURNS);
    assert_eq!(turns[0].user_text, "turn-5", "the oldest went first");
    assert_eq!(turns.last().unwrap().user_text, "turn-204");

    // Long exchanges: the record stays within its byte budget, the newest kept.
    let long = "a".repeat(7_000);
    for i in 0..60 {
        service.append("mum", &session.session_id, &format!("long-{i}-{long}")).await.unwrap();
    }
    let key = format!("conversation:{}", session.conversation_id);
    let bytes: usize = service.redis.cli(&["STRLEN", &key]).trim().parse().unwrap();
    assert!(bytes <= session_service::hot::MAX_CONVERSATION_BYTES, "{bytes}");
    let turns = service.turns("mum", &session.conversation_id).await;
    assert!(turns.last().unwrap().user_text.starts_with("long-59-"));
    assert!(turns.len() < 40, "{}", turns.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_co_parent_never_revives_another_members_suspended_session() {
    let service = Service::start().await;
    service.user("mum").await;
    service.user("dad").await;
    let child = service.child("mum", "Ada").await;
    let grant = pb::GrantPermissionRequest {
        user_id: "mum".into(),
        child_id: child.clone(),
        grantee_user_id: "dad".into(),
        permission: pb::Permission::Interact as i32,
        ..Default::default()
    };
    service.client().families.grant_permission(grant).await.unwrap();
    let mums = service.open("mum", &child).await.unwrap().session.unwrap();
    service.suspend("mum", &mums.session_id, 0).await.unwrap();

    let dads = service.open("dad", &child).await.unwrap();
    assert_eq!(dads.outcome, pb::OpenOutcome::Discovered as i32);
    let found = dads.session.unwrap();
    assert_eq!(
        (found.session_id.as_str(), found.user_id.as_str()),
        (mums.session_id.as_str(), "mum")
    );
    assert_eq!(found.state, pb::SessionState::Suspended as i32, "still suspended, not revived");
    let get = pb::GetSessionRequest { session_id: mums.session_id.clone() };
    let now = service.client().sessions.get_session(get).await.unwrap().into_inner();
    assert_eq!(now.state, pb::SessionState::Suspended as i32);
    // Mum herself resumes it.
    let back = service.open("mum", &child).await.unwrap();
    assert_eq!(back.outcome, pb::OpenOutcome::Resumed as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_archives_the_session_then_removes_its_hot_keys() {
    let service = Service::start().await;
    service.user("parent").await;
    let child = service.child("parent", "Max").await;
    let session = service.open("parent", &child).await.unwrap().session.unwrap();
    for text in ["one", "two"] {
        service.append("parent", &session.session_id, text).await.unwrap();
    }
    let end = pb::SessionRef {
        session_id: session.session_id.clone(),
        user_id: "parent".into(),
        epoch: 0,
    };
    let ended = service.client().sessions.end_session(end).await.unwrap().into_inner();
    assert_eq!(ended.state, pb::SessionState::Ended as i32);
    let archived = service.cold().await.list_archived_sessions(&child).await.unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!((archived[0].session.state.as_str(), archived[0].turn_count), ("ended", 2));
    let request = pb::GetSessionRequest { session_id: session.session_id.clone() };
    assert_eq!(
        service.client().sessions.get_session(request).await.unwrap_err().code(),
        Code::NotFound
    );
    let reopened = service.open("parent", &child).await.unwrap();
    assert_eq!(reopened.outcome, pb::OpenOutcome::Created as i32, "an ended session stays ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_unavailable_then_recovers() {
    let mut service = Service::start().await;
    service.user("parent").await;
    let child = service.child("parent", "Ola").await;
    service.open("parent", &child).await.unwrap();

    service.redis.stop();
    let err = service.open("parent", &child).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(blob_kit::error::unavailable_dependency(&err), Some("redis"));
    assert!(err.message().contains("session store unavailable"), "{err:?}");
    // Cold state is still served while Redis is down.
    let list = pb::ListChildrenRequest { user_id: "parent".into() };
    assert_eq!(
        service.client().families.list_children(list).await.unwrap().into_inner().children.len(),
        1
    );

    service.redis.restart().await;
    let reopened =
        blob_testkit::eventually("the service to reconnect", Duration::from_secs(20), || {
            let service = &service;
            let child = child.clone();
            async move { service.open("parent", &child).await.ok() }
        })
        .await;
    // Nothing is persisted by the test's Redis: the child simply gets a new session.
    assert_eq!(reopened.outcome, pb::OpenOutcome::Created as i32);
    let request =
        Request::new(pb::GetSessionRequest { session_id: reopened.session.unwrap().session_id });
    service.client().sessions.get_session(request).await.unwrap();
}

//! How many voice sockets one gateway holds: in all (`WS_MAX_SOCKETS`), and per account
//! (`WS_MAX_SOCKETS_PER_USER`, counted in sessions: the sockets of one session replace each
//! other, so a reconnect never counts twice and is never refused).
//!
//! Each socket holds one speech stream to the stt-service, so these caps bound the streams a
//! gateway opens too. Across gateways an account is bounded by its sessions: one live socket
//! per session, one session per child, at most 20 children per account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The caps of one gateway.
#[derive(Debug)]
pub struct SocketCapacity {
    slots: Arc<Semaphore>,
    per_user: usize,
    /// Per user, the sessions with live sockets and how many sockets each.
    users: Mutex<HashMap<String, HashMap<String, usize>>>,
}

/// A socket's place in the gateway-wide cap, held for the socket's life.
#[derive(Debug)]
pub struct SocketSlot {
    _permit: OwnedSemaphorePermit,
}

/// A socket's place among its account's sessions, held for the socket's life.
#[derive(Debug)]
pub struct UserSlot {
    capacity: Arc<SocketCapacity>,
    user_id: String,
    session_id: String,
}

impl SocketCapacity {
    /// Caps of `max_sockets` in all and `per_user` sessions per account.
    pub fn new(max_sockets: usize, per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_sockets)),
            per_user,
            users: Mutex::default(),
        })
    }

    /// A place for one more socket, unless the gateway is full.
    pub fn try_socket(&self) -> Option<SocketSlot> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| SocketSlot { _permit: permit })
    }

    /// A place for a socket of `user_id` on `session_id`, unless the account already has
    /// sockets for as many other sessions as it may.
    pub fn try_user(self: &Arc<Self>, user_id: &str, session_id: &str) -> Option<UserSlot> {
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sessions = users.entry(user_id.to_owned()).or_default();
        if !sessions.contains_key(session_id) && sessions.len() >= self.per_user {
            return None;
        }
        *sessions.entry(session_id.to_owned()).or_default() += 1;
        Some(UserSlot {
            capacity: Arc::clone(self),
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
        })
    }

    /// Sessions with live sockets, for `user_id`.
    #[cfg(test)]
    fn sessions_of(&self, user_id: &str) -> usize {
        self.users.lock().unwrap().get(user_id).map_or(0, HashMap::len)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users =
            self.capacity.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(sessions) = users.get_mut(&self.user_id) else { return };
        if let Some(count) = sessions.get_mut(&self.session_id) {
            *count -= 1;
            if *count == 0 {
                sessions.remove(&self.session_id);
            }
        }
        if sessions.is_empty() {
            users.remove(&self.user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_cap_frees_a_place_when_a_socket_ends() {
        let capacity = SocketCapacity::new(2, 8);
        let first = capacity.try_socket().expect("room for one");
        let _second = capacity.try_socket().expect("room for two");
        assert!(capacity.try_socket().is_none(), "a third socket is over the cap");
        drop(first);
        assert!(capacity.try_socket().is_some(), "an ended socket frees its place");
    }

    #[test]
    fn an_account_is_capped_in_sessions_and_a_reconnect_always_passes() {
        let capacity = SocketCapacity::new(100, 2);
        let a = capacity.try_user("parent", "s1").expect("first session");
        let _b = capacity.try_user("parent", "s2").expect("second session");
        assert!(capacity.try_user("parent", "s3").is_none(), "a third session is over the cap");
        // The old socket of s1 lingers while its reconnect arrives: still admitted.
        let again = capacity.try_user("parent", "s1").expect("a reconnect to s1");
        assert!(capacity.try_user("another parent", "s9").is_some(), "other accounts unaffected");
        drop(a);
        assert!(capacity.try_user("parent", "s3").is_none(), "s1 still has a socket");
        drop(again);
        assert_eq!(capacity.sessions_of("parent"), 1);
        assert!(capacity.try_user("parent", "s3").is_some(), "s1's place is free again");
    }

    #[test]
    fn nothing_is_left_behind_for_an_account_without_sockets() {
        let capacity = SocketCapacity::new(100, 1);
        drop(capacity.try_user("parent", "s1"));
        assert!(capacity.users.lock().unwrap().is_empty());
    }
}

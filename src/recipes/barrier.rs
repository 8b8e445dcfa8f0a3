//! A double barrier (ZooKeeper's recipe): `enter` returns once `size` participants have
//! entered; `leave` returns once all of them have left. Participants are ephemeral znodes,
//! so a crashed participant does not hold the others forever at `leave`.

use std::sync::Arc;
use std::time::Duration;

use super::{delete_if_present, ensure_path, signal, wait_signal};
use crate::command::CreateMode;
use crate::error::{Error, Result};
use crate::path;
use crate::session::Session;

const READY: &str = "ready";

/// One participant of a double barrier.
pub struct DoubleBarrier {
    session: Arc<Session>,
    dir: String,
    name: String,
    size: usize,
}

impl DoubleBarrier {
    /// Participant `name` (unique among participants) of the barrier at `dir` for `size`
    /// participants.
    pub fn new(session: Arc<Session>, dir: &str, name: &str, size: usize) -> Result<DoubleBarrier> {
        path::validate(&path::join(dir, name))?;
        if name == READY || size == 0 {
            return Err(Error::BadArguments(format!(
                "bad barrier participant {name:?} / size {size}"
            )));
        }
        Ok(DoubleBarrier {
            session,
            dir: dir.to_string(),
            name: name.to_string(),
            size,
        })
    }

    fn participants(&self) -> Result<Vec<String>> {
        let mut kids = self.session.get_children(&self.dir, None)?;
        kids.retain(|k| k != READY);
        Ok(kids)
    }

    /// Enters and waits until `size` participants have entered.
    pub fn enter(&self, timeout: Duration) -> Result<()> {
        let deadline = crate::time::deadline_in(timeout);
        ensure_path(&self.session, &self.dir)?;
        let ready = path::join(&self.dir, READY);
        let (w, rx) = signal();
        let armed = self.session.exists(&ready, w)?;
        match self.session.create(
            &path::join(&self.dir, &self.name),
            b"",
            CreateMode::Ephemeral,
        ) {
            Ok(_) | Err(Error::NodeExists(_)) => {}
            Err(e) => return Err(e),
        }
        if armed.is_some() {
            return Ok(());
        }
        if self.participants()?.len() >= self.size {
            return match self.session.create(&ready, b"", CreateMode::Persistent) {
                Ok(_) | Err(Error::NodeExists(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        wait_signal(&self.session, &rx, deadline, timeout)
    }

    /// Leaves and waits until every participant has left.
    pub fn leave(&self, timeout: Duration) -> Result<()> {
        let deadline = crate::time::deadline_in(timeout);
        let mine = path::join(&self.dir, &self.name);
        loop {
            let mut kids = self.participants()?;
            kids.sort();
            if kids.is_empty() {
                return delete_if_present(&self.session, &path::join(&self.dir, READY));
            }
            let me_in = kids.contains(&self.name);
            if kids.len() == 1 && me_in {
                self.session.delete(&mine, None)?;
                continue;
            }
            // The lowest waits for the highest; everybody else leaves and waits for the
            // lowest: one watch each, no herd.
            let watch = if kids[0] == self.name {
                path::join(&self.dir, kids.last().expect("non-empty"))
            } else {
                if me_in {
                    self.session.delete(&mine, None)?;
                }
                path::join(&self.dir, &kids[0])
            };
            let (w, rx) = signal();
            match self.session.get_data(&watch, w) {
                Ok(_) => wait_signal(&self.session, &rx, deadline, timeout)?,
                Err(Error::NoNode(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

//! The Redis key names of one deployment prefix: every queue's hashes, lists and sorted
//! sets, and the deployment-wide sets. The Lua scripts (`lua/`) build the same names
//! from the prefix (`common.lua`'s `k(q, part)`); docs/QUEUE.md lists them.

/// Redis key names for one deployment prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    fn q(&self, queue: &str, part: &str) -> String {
        format!("{}:q:{queue}:{part}", self.prefix)
    }
    pub fn tasks(&self, queue: &str) -> String {
        self.q(queue, "tasks")
    }
    pub fn ready(&self, queue: &str) -> String {
        self.q(queue, "ready")
    }
    pub fn active(&self, queue: &str) -> String {
        self.q(queue, "active")
    }
    pub fn delayed(&self, queue: &str) -> String {
        self.q(queue, "delayed")
    }
    pub fn dead(&self, queue: &str) -> String {
        self.q(queue, "dead")
    }
    pub fn dead_index(&self, queue: &str) -> String {
        self.q(queue, "dead_idx")
    }
    pub fn unique(&self, queue: &str) -> String {
        self.q(queue, "unique")
    }
    pub fn stats(&self, queue: &str) -> String {
        self.q(queue, "stats")
    }
    pub fn wake(&self, queue: &str) -> String {
        self.q(queue, "wake")
    }
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }
    pub fn paused(&self) -> String {
        format!("{}:paused", self.prefix)
    }
    pub fn schedules(&self) -> String {
        format!("{}:schedules", self.prefix)
    }
}

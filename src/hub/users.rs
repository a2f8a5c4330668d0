//! Users and their names. A user is one person however many tabs (connections) they have open:
//! all tabs share one name, and names are unique ignoring case.

use std::collections::HashMap;
use std::sync::Arc;

use crate::identity::ConnId;

pub struct UserEntry {
    pub name: Arc<str>,
    /// The name comes from the site's login: `nick` is refused.
    pub bound: bool,
    /// Open connections (tabs), oldest first.
    pub conns: Vec<ConnId>,
}

pub struct Users {
    by_key: HashMap<Arc<str>, UserEntry>,
    /// Lower-cased names in use → user key, so "Bob" and "bob" cannot both appear.
    names: HashMap<String, Arc<str>>,
    /// The host's name, lower-cased: nobody may take it (it would speak for the host).
    reserved: String,
}

impl Users {
    /// No users yet; `host_name` is reserved.
    pub fn new(host_name: &str) -> Self {
        Users { by_key: HashMap::new(), names: HashMap::new(), reserved: host_name.to_lowercase() }
    }

    fn taken(&self, lower: &str) -> bool {
        lower == self.reserved || self.names.contains_key(lower)
    }

    /// `base`, or `base-2`, `base-3`… whichever is free.
    pub fn free_name(&self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 2;
        while self.taken(&name.to_lowercase()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }

    pub fn get(&self, key: &str) -> Option<&UserEntry> {
        self.by_key.get(key)
    }

    pub fn get_key_value(&self, key: &str) -> Option<(&Arc<str>, &UserEntry)> {
        self.by_key.get_key_value(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &UserEntry)> {
        self.by_key.iter()
    }

    /// The user key that owns a name (any case).
    pub fn owner_of(&self, name: &str) -> Option<&Arc<str>> {
        self.names.get(&name.to_lowercase())
    }

    /// Adds connection `id` to user `key`: a known user's new tab gets the user's name; a new
    /// user gets `wanted` (or `guest-<id>`), made unique with `-2`, `-3`… The host's name is
    /// never given. Returns the name.
    pub fn add_tab(&mut self, key: &Arc<str>, id: ConnId, wanted: Option<String>, bound: bool) -> Arc<str> {
        if let Some(u) = self.by_key.get_mut(key) {
            u.conns.push(id);
            return u.name.clone();
        }
        let base = wanted.unwrap_or_else(|| format!("guest-{id}"));
        let name: Arc<str> = self.free_name(&base).into();
        self.names.insert(name.to_lowercase(), key.clone());
        self.by_key.insert(key.clone(), UserEntry { name: name.clone(), bound, conns: vec![id] });
        name
    }

    /// The anonymous user holding `name` (any case), if one does: a logged-in user who wants
    /// that name takes it, and the holder is renamed.
    pub fn anonymous_holder(&self, name: &str) -> Option<Arc<str>> {
        let holder = self.names.get(&name.to_lowercase())?;
        self.by_key.get(holder).filter(|u| !u.bound).map(|_| holder.clone())
    }

    /// Removes a tab; the user and its name go with its last tab.
    pub fn remove_tab(&mut self, key: &Arc<str>, id: ConnId) {
        let Some(u) = self.by_key.get_mut(key) else { return };
        u.conns.retain(|c| *c != id);
        if u.conns.is_empty() {
            let name = u.name.to_lowercase();
            self.by_key.remove(key);
            self.names.remove(&name);
        }
    }

    /// Why `key` may not take `new`, if it may not: a bound name, or a name someone else has.
    pub fn check_rename(&self, key: &Arc<str>, new: &str) -> Result<(), (&'static str, String)> {
        let Some(u) = self.by_key.get(key) else { return Ok(()) };
        if u.bound {
            return Err(("name_bound", "your name comes from your login and cannot be changed here".into()));
        }
        if new.to_lowercase() == self.reserved {
            return Err(("name_reserved", format!("`{new}` is the server's name")));
        }
        if self.names.get(&new.to_lowercase()).is_some_and(|owner| owner != key) {
            return Err(("name_taken", format!("`{new}` is taken")));
        }
        Ok(())
    }

    /// Gives user `key` the name `new`; returns the old one.
    pub fn rename(&mut self, key: &Arc<str>, new: &Arc<str>) -> Option<Arc<str>> {
        let u = self.by_key.get_mut(key)?;
        let old = std::mem::replace(&mut u.name, new.clone());
        self.names.remove(&old.to_lowercase());
        self.names.insert(new.to_lowercase(), key.clone());
        Some(old)
    }

    #[cfg(test)]
    pub fn name_count(&self) -> usize {
        self.names.len()
    }
}

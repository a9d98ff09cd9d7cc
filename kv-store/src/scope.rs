//! The isolation rule between apps, in one place: app `shop`'s namespace `carts` is stored as
//! `shop/carts`. A node's host opens only the namespaces an app's manifest binds, under that
//! app's name; the origin's link accepts a node's write only to a namespace an app the fleet
//! runs binds; quotas are kept per app (the part before the `/`). App names cannot hold `/`
//! (see `outpost_core::config::validate_name`), so no app reaches another's namespaces.

/// The stored name of `app`'s namespace `name`.
pub fn stored_namespace(app: &str, name: &str) -> String {
    format!("{app}/{name}")
}

/// The app and the name it uses of a stored namespace; `None` for a name no app owns.
pub fn split_namespace(stored: &str) -> Option<(&str, &str)> {
    stored.split_once('/')
}

/// The tenant (app) a stored namespace belongs to, whom its quota counts against; a name with
/// no app part is its own tenant.
pub fn tenant_of(stored: &str) -> &str {
    split_namespace(stored).map_or(stored, |(app, _)| app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_name_splits_back_into_its_app_and_name() {
        let stored = stored_namespace("shop", "carts");
        assert_eq!(stored, "shop/carts");
        assert_eq!(split_namespace(&stored), Some(("shop", "carts")));
        assert_eq!(tenant_of(&stored), "shop");
        assert_eq!(split_namespace("orphan"), None);
        assert_eq!(tenant_of("orphan"), "orphan");
        // A key-like tail stays the name's: only the first '/' separates the app.
        assert_eq!(split_namespace("shop/a/b"), Some(("shop", "a/b")));
    }
}

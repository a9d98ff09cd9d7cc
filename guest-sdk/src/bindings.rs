//! Bindings for the interfaces the SDK uses beyond the proxy world (see `wit/world.wit`).

wit_bindgen::generate!({
    path: "wit",
    world: "outpost:sdk/extras",
    generate_all,
});

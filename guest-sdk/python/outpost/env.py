"""The ``env`` a handler gets: its app's config values and KV namespaces."""

from wit_world.imports import wasi_config_store


class Env:
    """``env.vars`` holds the ``[config]`` values (also readable as ``env.NAME``, as in
    Workers); each ``[kv] namespaces`` entry is ``env.NAME`` (or ``env["NAME"]``), and the first
    is also ``env.KV``. Read at the first request: config exists only while serving."""

    def __init__(self, kv_namespaces: list[str]):
        self.vars = dict(wasi_config_store.get_all())
        self._bindings = dict(self.vars)
        if kv_namespaces:
            # Only apps with namespaces have the KV interfaces in their world; the build
            # imports the module for them while the component is pre-initialized.
            from .kv import KVNamespace
        for name in kv_namespaces:
            self._bindings[name] = KVNamespace(name)
        if kv_namespaces and "KV" not in self._bindings:
            self._bindings["KV"] = self._bindings[kv_namespaces[0]]

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_bindings"][name]
        except KeyError:
            raise AttributeError(
                f"env has no {name!r}: add it to [config] or [kv] namespaces in outpost.toml"
            ) from None

    def __getitem__(self, name: str):
        return self._bindings[name]

    def __contains__(self, name: str) -> bool:
        return name in self._bindings

    def __repr__(self) -> str:
        return f"<Env {sorted(self._bindings)}>"

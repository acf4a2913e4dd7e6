"""Set up a throw-away archive for a benchmark (what `archive init` + add-org do)."""

from __future__ import annotations


def init_archive(env: dict) -> None:
    from archive import db
    from archive.agents import register_agent
    from archive.instance import ArchiveInstance
    from archive.keys import generate_system_key
    from archive.principal import Principal
    from archive.settings import load_settings
    from tests.conftest import ORG

    settings = load_settings(environ=env)
    generate_system_key(settings.keys_dir)
    db.upgrade(settings.database_url)
    instance = ArchiveInstance(settings)
    if settings.storage.backend == "s3":
        instance.store.create_bucket()
    else:
        settings.local_store_path.mkdir(parents=True, exist_ok=True)
    with instance.catalog.unit_of_work() as session:
        register_agent(session, settings, Principal.system("bench"), kind="organisation",
                       identifier=ORG, name="Bench")
    instance.close()

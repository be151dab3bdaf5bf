"""`tunery keys ...`: the gateway's API keys, read and written in the gateway's own database.

The gateway adds this command group to the `tunery` CLI through the `tunery.cli` entry-point group, so core's CLI
never imports the gateway (a machine without the gateway has no `tunery keys`, and says so).

Self-hosted, the CLI runs where the database is (SQLite in the data directory, or the PostgreSQL URL the gateway
uses), which is how the very first key can exist before any key could authorize an API call. The gateway checks every
call against the database, so `revoke` holds from the next call on, without a restart. The same operations exist
over HTTP for admin keys (POST/GET /v1/keys, DELETE /v1/keys/{id}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tunery.cli import output
from tunery.cli.output import console, info, print_json, say

app = typer.Typer(help="API keys of the gateway: create (the key is shown once), list, revoke.", no_args_is_help=True)

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", envvar="TUNERY_DATA_DIR", show_envvar=True,
                                                 help="The gateway's data directory (default: ~/.tunery)")]
DbOpt = Annotated[str | None, typer.Option("--database-url", envvar="TUNERY_GATEWAY_DATABASE_URL", show_envvar=True,
                                           help="The gateway's database (default: SQLite in the data directory)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def _store(data_dir: Path | None, database_url: str | None) -> Any:
    # imported here: `tunery --help` loads this module and should not open SQLAlchemy and the gateway's settings
    from tunery_gateway.keys import KeyStore
    from tunery_gateway.settings import GatewaySettings
    from tunery_gateway.store import open_engine

    kw: dict[str, Any] = {}
    if data_dir is not None:
        kw["data_dir"] = data_dir
    if database_url:
        kw["database_url"] = database_url
    return KeyStore(open_engine(GatewaySettings(**kw)))


@app.command()
def create(name: Annotated[str, typer.Option("--name", help="What the key is for; shown in lists and logs.")],
           scopes: Annotated[str, typer.Option(help="Comma-separated: inference, fine-tune, admin.")] = "inference",
           rpm: Annotated[int, typer.Option(min=0, help="Requests per minute allowed (0: no limit).")] = 0,
           data_dir: DataDirOpt = None, database_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Create a key and print it once; only its hash is stored."""
    with output.handled():
        rec, key = _store(data_dir, database_url).create(name, scopes, rpm)
    if as_json:
        print_json(rec.as_dict() | {"key": key})
        return
    info(f"created {rec.id} ({escape(rec.name)}), scopes {', '.join(rec.scopes)}"
         f"{f', {rec.rpm} requests/minute' if rec.rpm else ''}. The key is shown only now; store it safely:")
    say(key)


@app.command("list")
def list_keys(include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
              data_dir: DataDirOpt = None, database_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Keys by id, name, scopes and limit (never the keys themselves)."""
    with output.handled():
        recs = _store(data_dir, database_url).list(include_revoked=include_revoked)
    if as_json:
        print_json({"keys": [r.as_dict() for r in recs]})
        return
    t = output.table("id", "name", "scopes", "rpm", "created", "revoked")
    for r in recs:
        t.add_row(r.id, escape(r.name), ",".join(r.scopes), str(r.rpm or "-"),
                  r.created_at.strftime("%Y-%m-%d %H:%M"), r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at
                  else "")
    console.print(t)


@app.command()
def revoke(key: Annotated[str, typer.Argument(help="Key id (key_...) or name.")],
           data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Revoke a key; it stops working on the gateway's next call."""
    with output.handled():
        rec = _store(data_dir, database_url).revoke(key)
    say(f"revoked {rec.id} ({escape(rec.name)})")

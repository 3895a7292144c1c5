"""``xinference``: the command line client (and, with no verb, the local server).

Importing this module stays cheap: the HTTP client, the server and every engine
are imported inside the verbs that need them. Every failure prints one line
``Error: ...`` on stderr and exits with status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from .._version import __version__
from ..model_types import type_names

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_TYPE_HELP = f"Model type: {', '.join(type_names())}."


class _Group(click.Group):
    """Turns any failure inside a verb into ``Error: <one line>`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
        except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback
            raise click.ClickException(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text or not isinstance(exc, (RuntimeError, OSError, ValueError)):
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _settings():
    from ..settings import Settings
    return Settings.from_env()


def _token_file() -> Path:
    return _settings().home / "auth" / "tokens.json"


def _make_client(endpoint: str, api_key: Optional[str]):
    from ..client import Client
    return Client(endpoint, api_key=api_key)


def _client(endpoint: Optional[str], api_key: Optional[str]):
    """A client for ``--endpoint`` (else ``XINFERENCE_ENDPOINT``, else the default)."""
    endpoint = endpoint or _settings().endpoint
    from ..client.transport import normalize_base_url
    from ..client.tokens import load_token
    endpoint = normalize_base_url(endpoint)
    return _make_client(endpoint, api_key or load_token(_token_file(), endpoint))


def _server_options(func: Callable) -> Callable:
    func = click.option("-ak", "--api-key", default=None,
                        help="API key or token for a server that requires one.")(func)
    return click.option("-e", "--endpoint", default=None,
                        help="Server address (default: $XINFERENCE_ENDPOINT, else "
                             "http://127.0.0.1:9997).")(func)


def _cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _echo_table(headers: Sequence[str], rows: List[Sequence[Any]], empty: str) -> None:
    """Print a plain aligned text table, or ``empty`` when there is no row."""
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    click.echo("\n".join([line(headers), line(["-" * w for w in widths])] +
                          [line(row) for row in cells]))


def _convert_value(raw: str) -> Any:
    lowered = raw.strip().lower()
    if lowered in ("true", "false", "none", "null"):
        return {"true": True, "false": False}.get(lowered)
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_extra_options(args: Sequence[str]) -> Dict[str, Any]:
    """Engine options given as ``--name value``, ``--name=value`` or a bare ``--flag``."""
    options: Dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise click.UsageError(
                f"unexpected argument {token!r}: engine options are written --name value")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                value = "true"
        options[key.replace("-", "_")] = _convert_value(value)
        i += 1
    return options


def _n_gpu(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered == "auto":
        return "auto"
    if lowered in ("none", "cpu"):
        return None
    try:
        return int(lowered)
    except ValueError:
        raise click.BadParameter("use auto, none (CPU only) or a number of GPUs",
                                 param_hint="--n-gpu") from None


def _gpu_idx(value: Optional[str]) -> Optional[List[int]]:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("use GPU indexes separated by commas, e.g. 0,1",
                                 param_hint="--gpu-idx") from None


@click.group(cls=_Group, invoke_without_command=True,
             help="Serve open models. With no command, start a local server "
                  "(same as xinference-local); the commands below talk to a running one.")
@click.version_option(__version__, "-v", "--version", prog_name="xinference")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
@click.option("-H", "--host", default="127.0.0.1", show_default=True,
              help="Address the local server binds to.")
@click.option("-p", "--port", default=9997, show_default=True, type=int,
              help="Port of the local server.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, host: str, port: int) -> None:
    if ctx.invoked_subcommand is None:
        from .local import run_local
        run_local(host, port, log_level.upper())


_LAUNCH_HELP = ("Launch a model. Options not listed here are passed to the engine, "
                "e.g. --n_ctx 4096 or --gpu_memory_utilization 0.9.")


@cli.command(help=_LAUNCH_HELP,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@_server_options
@click.option("-n", "--model-name", required=True, help="Model family name.")
@click.option("-t", "--model-type", default="LLM", show_default=True, help=_TYPE_HELP)
@click.option("-u", "--model-uid", default=None, help="Uid to give the model.")
@click.option("-s", "--size-in-billions", default=None, help="Model size, e.g. 0_5 or 7.")
@click.option("-f", "--model-format", default=None, help="e.g. ggufv2, pytorch.")
@click.option("-q", "--quantization", default=None, help="e.g. Q4_K_M, none.")
@click.option("--model-engine", default=None, help="e.g. llama.cpp, transformers.")
@click.option("--context-length", type=int, default=None)
@click.option("-r", "--replica", type=int, default=1, show_default=True)
@click.option("--n-gpu", default="auto", show_default=True,
              help="GPUs per replica: auto, none (CPU only) or a number.")
@click.option("--worker-ip", default=None, help="Worker to place the model on.")
@click.option("--gpu-idx", default=None, help="GPU indexes, e.g. 0,1.")
@click.option("--model-path", default=None, help="Local weights (file or folder).")
@click.option("--trust-remote-code", type=click.BOOL, is_flag=False, flag_value=True,
              default=None, help="Allow code shipped with the model (true/false).")
@click.option("--enable-thinking", type=click.BOOL, is_flag=False, flag_value=True,
              default=None, help="Thinking mode of hybrid reasoning models (true/false).")
@click.option("--enable-virtual-env/--disable-virtual-env", default=None,
              help="Run the model in its own virtualenv (default: server setting).")
@click.option("-vp", "--virtual-env-package", multiple=True,
              help="Package for the model's virtualenv (repeatable).")
@click.option("--env", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Environment variable of the model process (repeatable).")
@click.pass_context
def launch(ctx: click.Context, endpoint, api_key, model_name, model_type, model_uid,
           size_in_billions, model_format, quantization, model_engine, context_length,
           replica, n_gpu, worker_ip, gpu_idx, model_path, trust_remote_code,
           enable_thinking, enable_virtual_env, virtual_env_package, env) -> None:
    from ..client.restful_api import launch_call

    extra = parse_extra_options(ctx.args)
    call = launch_call(
        model_name, model_type, model_engine, model_uid, size_in_billions, model_format,
        quantization, replica, _n_gpu(n_gpu), None, worker_ip, _gpu_idx(gpu_idx),
        context_length=context_length, model_path=model_path,
        trust_remote_code=trust_remote_code, enable_thinking=enable_thinking,
        enable_virtual_env=enable_virtual_env,
        virtual_env_packages=list(virtual_env_package) or None,
        envs=dict(env) or None, **extra)
    with _client(endpoint, api_key) as client:
        answer = client.execute(call) or {}
    click.echo(f"Model uid: {answer.get('model_uid')}")
    if answer.get("model_engine"):
        click.echo(f"Engine: {answer['model_engine']}")


@cli.command("list", help="List running models.")
@_server_options
def list_models(endpoint, api_key) -> None:
    with _client(endpoint, api_key) as client:
        models = client.list_models()
    rows = [[uid, d.get("model_type"), d.get("model_name"), d.get("model_engine"),
             d.get("model_format"), d.get("quantization"), d.get("replica"), d.get("status")]
            for uid, d in models.items()]
    _echo_table(["UID", "Type", "Name", "Engine", "Format", "Quantization", "Replicas",
                 "Status"], rows, "No model is running.")


@cli.command(help="Stop a running model.")
@_server_options
@click.option("-u", "--model-uid", required=True)
def terminate(endpoint, api_key, model_uid) -> None:
    with _client(endpoint, api_key) as client:
        client.terminate_model(model_uid)
    click.echo(f"Model {model_uid} terminated.")


def _spec_formats(family: Dict[str, Any]) -> List[str]:
    formats: List[str] = []
    for spec in family.get("model_specs") or []:
        if spec.get("model_format") not in formats:
            formats.append(spec.get("model_format"))
    return formats


@cli.command(help="List the models that can be launched.")
@_server_options
@click.option("-t", "--model-type", default="LLM", show_default=True, help=_TYPE_HELP)
@click.option("--detailed", is_flag=True, help="Show abilities, formats and context length.")
def registrations(endpoint, api_key, model_type, detailed) -> None:
    with _client(endpoint, api_key) as client:
        families = client.list_model_registrations(model_type, detailed=detailed)
    if detailed:
        headers = ["Type", "Name", "Built-in", "Abilities", "Formats", "Context length"]
        rows = [[model_type, f.get("model_name"), f.get("is_builtin"), f.get("model_ability"),
                 _spec_formats(f), f.get("context_length")] for f in families]
    else:
        headers = ["Type", "Name", "Built-in"]
        rows = [[model_type, f.get("model_name"), f.get("is_builtin")] for f in families]
    _echo_table(headers, rows, f"No {model_type} model is registered.")


@cli.command(help="Register a custom model from a JSON file.")
@_server_options
@click.option("-t", "--model-type", default="LLM", show_default=True, help=_TYPE_HELP)
@click.option("-f", "--file", "file_path", required=True, help="JSON family definition.")
@click.option("--persist", is_flag=True, help="Keep the registration across restarts.")
@click.option("--worker-ip", default=None)
def register(endpoint, api_key, model_type, file_path, persist, worker_ip) -> None:
    text = Path(file_path).read_text(encoding="utf-8")
    try:
        name = json.loads(text).get("model_name", "?")
    except (ValueError, AttributeError) as exc:
        raise click.ClickException(f"{file_path} is not a JSON object: {exc}") from None
    with _client(endpoint, api_key) as client:
        client.register_model(model_type, text, persist, worker_ip=worker_ip)
    click.echo(f"Model {name} registered.")


@cli.command(help="Remove a custom model's registration.")
@_server_options
@click.option("-t", "--model-type", default="LLM", show_default=True, help=_TYPE_HELP)
@click.option("-n", "--model-name", required=True)
def unregister(endpoint, api_key, model_type, model_name) -> None:
    with _client(endpoint, api_key) as client:
        client.unregister_model(model_type, model_name)
    click.echo(f"Model {model_name} unregistered.")


def _engine_rows(engines: Dict[str, Any], fmt, size, quant, engine_name) -> List[List[Any]]:
    rows = []
    for name, entries in engines.items():
        if engine_name and name.lower() != engine_name.lower():
            continue
        for entry in entries or [{}]:
            quants = entry.get("quantizations") or []
            if fmt and entry.get("model_format") not in (None, fmt):
                continue
            if size and str(entry.get("model_size_in_billions")) != str(size):
                continue
            if quant and entry and quant not in quants:
                continue
            available = entry.get("available", True)
            rows.append([name, entry.get("model_format"), entry.get("model_size_in_billions"),
                         [quant] if quant else quants, available,
                         "" if available else entry.get("reason")])
    return rows


@cli.command(help="Show which engines can run a model here, and why not when they cannot.")
@_server_options
@click.option("-n", "--model-name", required=True)
@click.option("-t", "--model-type", default="LLM", show_default=True, help=_TYPE_HELP)
@click.option("-f", "--model-format", default=None)
@click.option("-s", "--size-in-billions", default=None)
@click.option("-q", "--quantization", default=None)
@click.option("--model-engine", default=None)
def engine(endpoint, api_key, model_name, model_type, model_format, size_in_billions,
           quantization, model_engine) -> None:
    with _client(endpoint, api_key) as client:
        engines = client.query_engine_by_model_name(model_name, model_type,
                                                    include_unavailable=True)
    rows = _engine_rows(engines, model_format, size_in_billions, quantization, model_engine)
    _echo_table(["Engine", "Format", "Size (B)", "Quantizations", "Usable", "Reason"], rows,
                f"No engine matches {model_name} with these options.")


def _read_input() -> Optional[str]:
    if sys.stdin.isatty():
        click.echo(">>> ", nl=False)
    line = sys.stdin.readline()
    return None if not line else line.rstrip("\r\n")


def _text_of(result: Dict[str, Any], stream: bool) -> str:
    choice = (result.get("choices") or [{}])[0]
    if "text" in choice:
        return choice["text"] or ""
    part = choice.get("delta" if stream else "message") or {}
    return part.get("content") or ""


def _show_answer(result: Any, stream: bool) -> str:
    if not stream:
        text = _text_of(result, False)
        click.echo(text)
        return text
    pieces = []
    for chunk in result:
        pieces.append(_text_of(chunk, True))
        click.echo(pieces[-1], nl=False)
        sys.stdout.flush()
    click.echo()
    return "".join(pieces)


def _repl(method: str, model_uid: str, endpoint, api_key, max_tokens: int,
          stream: bool) -> None:
    """Read lines until end of input or ``exit``; ``chat`` keeps the conversation."""
    config = {"max_tokens": max_tokens, "stream": stream}
    messages: List[Dict[str, str]] = []
    with _client(endpoint, api_key) as client:
        handle = client.get_model(model_uid)
        if not hasattr(handle, method):
            need = "a chat model" if method == "chat" else "an LLM"
            raise click.ClickException(
                f"model {model_uid} is not {need} (type {handle.description.get('model_type')}"
                f", abilities: {_cell(handle.description.get('model_ability'))})")
        while True:
            line = _read_input()
            if line is None or line.strip().lower() in ("exit", "quit"):
                return
            if not line.strip():
                continue
            if method == "generate":
                _show_answer(handle.generate(line, generate_config=config), stream)
                continue
            messages.append({"role": "user", "content": line})
            answer = _show_answer(handle.chat(messages, generate_config=config), stream)
            messages.append({"role": "assistant", "content": answer})


def _repl_options(func: Callable) -> Callable:
    func = click.option("--stream/--no-stream", default=True, show_default=True)(func)
    func = click.option("--max_tokens", "--max-tokens", "max_tokens", type=int, default=512,
                        show_default=True)(func)
    func = click.option("-u", "--model-uid", required=True)(func)
    return _server_options(func)


@cli.command(help="Chat with a model: one message per line; exit or end of input quits.")
@_repl_options
def chat(endpoint, api_key, model_uid, max_tokens, stream) -> None:
    _repl("chat", model_uid, endpoint, api_key, max_tokens, stream)


@cli.command(help="Complete prompts with a model: one prompt per line.")
@_repl_options
def generate(endpoint, api_key, model_uid, max_tokens, stream) -> None:
    _repl("generate", model_uid, endpoint, api_key, max_tokens, stream)


def _generic_rows(items: List[Dict[str, Any]]) -> tuple:
    headers: List[str] = []
    for item in items:
        headers.extend(key for key in item if key not in headers)
    return headers, [[item.get(h) for h in headers] for item in items]


@cli.command(help="List downloaded (cached) models.")
@_server_options
@click.option("-n", "--model-name", default=None)
@click.option("--worker-ip", default=None)
def cached(endpoint, api_key, model_name, worker_ip) -> None:
    with _client(endpoint, api_key) as client:
        items = client.list_cached_models(model_name, worker_ip) or []
    headers, rows = _generic_rows(items)
    _echo_table(headers, rows, "No cached model.")


@cli.command("remove-cache", help="Delete the files of a cached model version.")
@_server_options
@click.option("--model_version", "--model-version", "model_version", required=True)
@click.option("--worker-ip", default=None)
@click.option("-y", "--check", is_flag=True, help="Do not ask for confirmation.")
def remove_cache(endpoint, api_key, model_version, worker_ip, check) -> None:
    with _client(endpoint, api_key) as client:
        files = client.list_deletable_models(model_version, worker_ip)
        paths = files.get("paths", files) if isinstance(files, dict) else files
        click.echo(f"Files of {model_version}:")
        for path in paths or []:
            click.echo(f"  {path}")
        if not check and not click.confirm("Delete them?", default=False):
            click.echo("Nothing deleted.")
            return
        removed = client.confirm_and_remove_model(model_version, worker_ip)
    click.echo("Deleted." if removed else "Nothing was deleted.")


@cli.command("cal-model-mem", help="Estimate a model's memory needs (not supported yet).")
@click.option("-n", "--model-name", default=None)
@click.option("-s", "--size-in-billions", default=None)
@click.option("-f", "--model-format", default=None)
@click.option("-q", "--quantization", default=None)
@click.option("-c", "--context-length", default=None)
def cal_model_mem(**_: Any) -> None:
    raise click.ClickException("cal-model-mem is not supported yet")


@cli.command(help="Log in to a server that requires authentication.")
@click.option("-e", "--endpoint", default=None, help="Server address.")
@click.option("--username", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True)
def login(endpoint, username, password) -> None:
    with _client(endpoint, None) as client:
        if not client.cluster_requires_auth():
            click.echo(f"The server at {client.base_url} needs no login.")
            return
        answer = client.login(username, password)
        from ..client.tokens import save_token
        save_token(_token_file(), client.base_url, answer["access_token"])
    click.echo(f"Logged in to {client.base_url} as {username}.")


@cli.command("stop-cluster", help="Stop every model, worker and the supervisor.")
@_server_options
@click.option("-y", "--check", is_flag=True, help="Do not ask for confirmation.")
def stop_cluster(endpoint, api_key, check) -> None:
    with _client(endpoint, api_key) as client:
        if not check and not click.confirm(f"Stop the cluster at {client.base_url}?",
                                           default=False):
            click.echo("Nothing stopped.")
            return
        client.stop_cluster()
    click.echo("Cluster stopped.")


@cli.command("vllm-models", help="List the models the vLLM engine can run.")
@_server_options
def vllm_models(endpoint, api_key) -> None:
    with _client(endpoint, api_key) as client:
        models = client.vllm_models()
    names = list(models) if isinstance(models, (dict, list)) else [models]
    click.echo("\n".join(str(n) for n in names) if names else "No vLLM model.")


if __name__ == "__main__":
    cli()

"""Write local.settings.json for running the app locally against the resources `azd` deployed.

azure.yaml runs this after `azd provision` (hook `postprovision`); run it by hand with `--force`
to replace an existing local.settings.json, or with `--env-file` to read saved
`azd env get-values` output instead of calling azd. The settings are keyless, like the app's in
Azure, with one difference: they carry no `AzureWebJobsStorage__credential` / `__clientId` and no
`AZURE_CLIENT_ID`, because locally the Functions host and DefaultAzureCredential sign in as the
developer (`az login` / `azd auth login`), whom infra/app/rbac.bicep grants the same data roles.
`AUTH_SECRET` is a fresh local one: the deployed app's secret stays in Azure.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_SETTINGS = PROJECT_ROOT / "local.settings.json"

# azd outputs (infra/main.bicep) copied into Values under the same name; the first ones must be
# there, the OpenAI ones only when a model was deployed.
REQUIRED_OUTPUTS = (
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "SWARM_QUEUE",
    "SWARM_POISON_QUEUE",
    "MAINTENANCE_SCHEDULE",
    "SWARM_CONTAINER",
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "WEBPUBSUB_ENDPOINT",
    "WEBPUBSUB_HUB",
    "LLM_PROVIDER",
)
OPENAI_OUTPUTS = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_API_VERSION")


class MissingOutputsError(RuntimeError):
    """The azd environment lacks outputs of infra/main.bicep (not provisioned yet?)."""


def parse_env_values(text: str) -> dict[str, str]:
    """Parse `azd env get-values` output: one `KEY="value"` per line, dotenv escapes."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = _unescape(value)
        values[key.strip()] = value
    return values


def _unescape(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
    return "".join(out)


def build_local_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The local.settings.json document for these azd environment values."""
    missing = [name for name in REQUIRED_OUTPUTS if not env.get(name)]
    if missing:
        raise MissingOutputsError(
            f"the azd environment has no {', '.join(missing)}: run `azd provision` first"
        )
    values: dict[str, str] = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "SWARM_ENV": "development",
        "AUTH_SECRET": secrets.token_urlsafe(48),
    }
    values.update({name: env[name] for name in REQUIRED_OUTPUTS})
    if env["LLM_PROVIDER"] == "azure_openai":
        values.update({name: env[name] for name in OPENAI_OUTPUTS if env.get(name)})
    return {"IsEncrypted": False, "Values": values}


def read_azd_env() -> dict[str, str]:
    try:
        result = subprocess.run(
            ["azd", "env", "get-values"], check=True, capture_output=True, text=True
        )
    except FileNotFoundError as exc:
        raise SystemExit("azd is not installed (or not on PATH)") from exc
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"`azd env get-values` failed: {exc.stderr.strip()}") from exc
    return parse_env_values(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write local.settings.json from the azd environment."
    )
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--env-file", type=Path, help="saved `azd env get-values` output")
    parser.add_argument("--output", type=Path, default=LOCAL_SETTINGS, help="file to write")
    args = parser.parse_args(argv)

    if args.output.exists() and not args.force:
        # It may be the Azurite/emulator setup; never overwrite someone's settings silently.
        print(
            f"{args.output} exists, left unchanged; to point it at the Azure resources run:\n"
            f"  python {Path(__file__).resolve().relative_to(PROJECT_ROOT)} --force"
        )
        return 0

    env = parse_env_values(args.env_file.read_text()) if args.env_file else read_azd_env()
    try:
        document = build_local_settings(env)
    except MissingOutputsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output} (Azure resources, your own Entra ID sign-in)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

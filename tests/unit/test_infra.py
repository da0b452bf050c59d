"""The deployment (infra/*.bicep, azure.yaml, the local-settings hook) checked without a network.

No Bicep compiler or Azure CLI can be installed on the project's machines (README, "How the
templates are checked"), so every template is parsed with a Bicep grammar (pycep-parser: syntax
only, no types or symbols) and read as text: (a) every service the app uses is declared,
keyless, and every data-plane role it needs is assigned in infra/app/rbac.bicep; (b) the app
settings the Bicep gives the Function App are parsed and fed to the real `Settings`, and every
Azure client the app builds from them is constructed (never called) in managed-identity form.
A renamed setting, a missing role or a key that creeps in fails here rather than in Azure.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential
from pydantic import AliasChoices

from swarm_core.adapters import cosmos as cosmos_adapter
from swarm_core.adapters import webpubsub as webpubsub_adapter
from swarm_core.adapters.blob import build_blob_service
from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.adapters.openai_llm import (
    LLMProviderSettings,
    OpenAIChatModel,
)
from swarm_core.adapters.queue import build_queue_service
from swarm_core.bootstrap import build_azure, build_llm, build_publisher
from swarm_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
API = INFRA / "app" / "api.bicep"
RBAC = INFRA / "app" / "rbac.bicep"
DB = INFRA / "app" / "db.bicep"
WEBPUBSUB = INFRA / "app" / "webpubsub.bicep"
OPENAI = INFRA / "app" / "openai.bicep"
KEYVAULT = INFRA / "app" / "keyvault.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Built-in role definition ids, checked against Azure's built-in roles list. (The issue gave
# 974c5e8b-45b9-4653-ba55-5f855dd0a6ae for Storage Queue Data Contributor: that id does not
# exist; the role's id is ...-5f855dd0fb88.)
ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Web PubSub Service Owner": "12cf5a90-567b-43ae-8102-96cf46c7d9b4",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
}
# Where each role must be granted (the symbolic name of the resource in rbac.bicep).
ROLE_SCOPES = {
    "Storage Blob Data Owner": "storage",
    "Storage Queue Data Contributor": "storage",
    "Monitoring Metrics Publisher": "appInsights",
    "Web PubSub Service Owner": "webPubSub",
    "Cognitive Services OpenAI User": "openAI",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
# The app's identity only (the developer's local run makes its own AUTH_SECRET).
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
APP_PRINCIPAL = "managedIdentityPrincipalId"
USER_PRINCIPAL = "userPrincipalId"

# Stand-ins for the values only Azure knows (resource endpoints, the identity's client id).
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
PLACEHOLDERS = {
    "AzureWebJobsStorage__blobServiceUri": "https://stexample.blob.core.windows.net/",
    "AzureWebJobsStorage__queueServiceUri": "https://stexample.queue.core.windows.net/",
    "AzureWebJobsStorage__clientId": CLIENT_ID,
    "AZURE_CLIENT_ID": CLIENT_ID,
    "COSMOS_ENDPOINT": "https://cosmos-example.documents.azure.com:443/",
    "WEBPUBSUB_ENDPOINT": "https://wps-example.webpubsub.azure.com",
    # What the app sees once App Service has resolved the Key Vault reference.
    "AUTH_SECRET": secrets.token_urlsafe(48),
    "APPLICATIONINSIGHTS_CONNECTION_STRING": (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://example.in.applicationinsights.azure.com/"
    ),
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={CLIENT_ID};Authorization=AAD",
    "AZURE_OPENAI_ENDPOINT": "https://cog-example.openai.azure.com/",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini",
}
# Settings read by the Functions host or the Azure SDKs rather than by swarm_core.
HOST_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "PYTHON_THREADPOOL_THREAD_COUNT",
}


# --- reading Bicep as text ---------------------------------------------------------------------


def strip_comments(text: str) -> str:
    """Bicep without `//` and `/* */` comments; string literals (which may hold `//`) are kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("'''", i):  # multi-line string: no escapes inside
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def code(path: Path) -> str:
    return strip_comments(path.read_text())


def block_at(text: str, start: int) -> str:
    """The balanced `{...}` or `[...]` starting at the first bracket at or after `start`."""
    opening = re.compile(r"[{\[]").search(text, start)
    assert opening, f"no block after offset {start}"
    depth = 0
    i = opening.start()
    while i < len(text):
        ch = text[i]
        if ch == "'":  # skip a string literal
            i = text.index("'", i + 1) + 1
            continue
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[opening.start() : i + 1]
        i += 1
    raise AssertionError("unbalanced block")


def entries(block: str) -> dict[str, str]:
    """The `key: value` lines directly inside an object block (nested blocks kept raw)."""
    found: dict[str, str] = {}
    depth = 0
    for line in block.splitlines():
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.+?)\s*$", line)
        if depth == 1 and match:
            found[match.group(1)] = match.group(2)
        unquoted = re.sub(r"'[^']*'", "", line)
        depth += unquoted.count("{") + unquoted.count("[")
        depth -= unquoted.count("}") + unquoted.count("]")
    return found


def declarations(text: str, keyword: str) -> dict[str, re.Match[str]]:
    """`resource` or `module` declarations: symbolic name -> match (type/path, condition)."""
    pattern = re.compile(
        rf"^{keyword} (\w+) '([^']+)'( existing)? = (?:if \((.+?)\) )?[\[{{]", re.MULTILINE
    )
    return {m.group(1): m for m in pattern.finditer(text)}


def block_of(text: str, match: re.Match[str]) -> str:
    return block_at(text, match.end() - 1)


def vars_and_params(text: str) -> dict[str, str]:
    """`var x = <expr>` and `param x <type> = <default>` one-liners: name -> expression."""
    found = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^var (\w+) = (.+)$", text, re.MULTILINE)
        if not m.group(2).endswith(("{", "["))
    }
    for m in re.finditer(r"^param (\w+) \w+ = (.+)$", text, re.MULTILINE):
        found[m.group(1)] = m.group(2)
    return found


def params_declared(text: str) -> dict[str, str | None]:
    """Every `param`: name -> default expression (None when the caller must give it)."""
    return {
        m.group(1): m.group(3)
        for m in re.finditer(r"^param (\w+) (\w+)(?: = (.+))?$", text, re.MULTILINE)
    }


def string_value(expr: str, scope: dict[str, str], depth: int = 0) -> str | None:
    """The value of a string literal or identifier when the templates fix it, else None."""
    expr = expr.strip()
    if depth > 5:
        return None
    if re.fullmatch(r"[A-Za-z_]\w*", expr):
        return string_value(scope[expr], scope, depth + 1) if expr in scope else None
    literal = re.fullmatch(r"'((?:[^'\\]|\\.)*)'", expr)
    if not literal:
        return None
    parts: list[str] = []
    for piece in re.split(r"(\$\{[^}]*\})", literal.group(1)):
        if piece.startswith("${"):
            value = string_value(piece[2:-1], scope, depth + 1)
            if value is None:
                return None
            parts.append(value)
        else:
            parts.append(piece)
    return "".join(parts)


# --- the app settings in infra/app/api.bicep ---------------------------------------------------

SETTINGS_BLOCKS = ("appSettings", "offlineLLMSettings", "azureOpenAISettings")


def settings_expressions() -> dict[str, dict[str, str]]:
    """The three settings blocks of api.bicep: block name -> {setting: Bicep expression}."""
    text = code(API)
    blocks = {}
    for name in SETTINGS_BLOCKS:
        match = re.search(rf"^var {name} = \{{", text, re.MULTILINE)
        assert match, f"api.bicep has no `var {name} = {{...}}` block"
        blocks[name] = entries(block_at(text, match.end() - 1))
    return blocks


def api_scope() -> dict[str, str]:
    """What api.bicep's parameters are bound to: main.bicep's arguments, in main's scope."""
    main = code(MAIN)
    main_scope = vars_and_params(main)
    module = block_of(main, declarations(main, "module")["api"])
    arguments = entries(block_at(module, module.index("params:")))
    # Arguments are main.bicep expressions; resolve them there and hand the values to api.bicep.
    scope = {}
    for param, expr in arguments.items():
        value = string_value(expr, main_scope)
        if value is not None:
            scope[param] = "'" + value.replace("'", "\\'") + "'"
    return scope


def app_settings(llm: str) -> dict[str, str]:
    """The settings the Function App gets, with placeholders where only Azure knows the value."""
    blocks = settings_expressions()
    chosen = {**blocks["appSettings"], **blocks[f"{llm}Settings"]}
    scope = api_scope()
    values = {}
    for name, expr in chosen.items():
        value = string_value(expr, scope)
        if value is None:
            assert name in PLACEHOLDERS, f"{name} = {expr}: add a placeholder value to this test"
            value = PLACEHOLDERS[name]
        values[name] = value
    return values


def settings_aliases() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if field.alias:
            names.add(field.alias)
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices)
    return names


def llm_setting_names() -> set[str]:
    return {name.upper() for name in LLMProviderSettings.model_fields}


def binding_references() -> tuple[set[str], set[str]]:
    """`%SETTING%` expressions and `connection=` names of the app's trigger bindings.

    Read from the source: `app.get_functions()` may run only once per app object, and the HTTP
    tests already call it."""
    sources = [ROOT / "function_app.py", *(ROOT / "swarm_core" / "entrypoints").glob("*.py")]
    text = "\n".join(path.read_text() for path in sources)
    expressions = set(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", text))
    connections = set(re.findall(r"connection\s*=\s*\"([^\"]+)\"", text))
    return expressions, connections


@pytest.fixture
def app_environment(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Set exactly a given set of app settings as the environment (nothing from the host)."""
    known = settings_aliases() | llm_setting_names() | HOST_SETTINGS
    known |= {"AzureWebJobsStorage", "AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"}

    def apply(values: dict[str, str]) -> None:
        for name in known:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


# --- (a) what the templates declare ------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_template_parses_as_bicep(path: Path) -> None:
    from pycep import BicepParser

    parsed = BicepParser().parse(file_path=path)
    assert parsed, path.name


def test_main_is_subscription_scope_with_token_naming():
    main = code(MAIN)
    assert re.search(r"^targetScope = 'subscription'$", main, re.MULTILINE)
    assert "loadJsonContent('./abbreviations.json')" in main
    assert (
        "var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))"
        in main
    )
    assert "Microsoft.Resources/resourceGroups@" in main
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", main))
    assert used and used <= set(abbreviations), used - set(abbreviations)


def test_modules_resolve_and_registry_modules_are_pinned():
    for path in BICEP_FILES:
        for name, match in declarations(code(path), "module").items():
            target = match.group(2)
            if target.startswith("br/public:"):
                assert re.fullmatch(r"br/public:avm/(res|ptn)/[\w/-]+:\d+\.\d+\.\d+", target), (
                    f"{path.name}: module {name} must pin an exact AVM version: {target}"
                )
            else:
                assert (path.parent / target).is_file(), f"{path.name}: {target} not found"


def test_local_modules_get_exactly_the_parameters_they_declare():
    for path in BICEP_FILES:
        text = code(path)
        for name, match in declarations(text, "module").items():
            if match.group(2).startswith("br/"):
                continue
            declared = params_declared(code(path.parent / match.group(2)))
            block = block_of(text, match)
            given = set(entries(block_at(block, block.index("params:"))))
            assert given <= set(declared), f"{name}: unknown {given - set(declared)}"
            required = {param for param, default in declared.items() if default is None}
            assert required <= given, f"{name}: missing {required - given}"


def test_function_app_is_flex_consumption_python_with_the_identity():
    main, api = code(MAIN), code(API)
    plan = block_of(main, declarations(main, "module")["appServicePlan"])
    assert "avm/res/web/serverfarm:" in declarations(main, "module")["appServicePlan"].group(2)
    assert "name: 'FC1'" in plan and "tier: 'FlexConsumption'" in plan
    assert "reserved: true" in plan

    site_match = declarations(api, "module")["functionApp"]
    assert site_match.group(2).startswith("br/public:avm/res/web/site:")
    site = block_of(api, site_match)
    assert "kind: 'functionapp,linux'" in site
    config = block_at(site, site.index("functionAppConfig:"))
    assert "type: 'blobContainer'" in config
    assert "${deploymentStorageContainerName}" in config
    assert "type: 'UserAssignedIdentity'" in config
    assert "userAssignedIdentityResourceId: identityId" in config
    assert "instanceMemoryMB: instanceMemoryMB" in config
    assert "maximumInstanceCount: maximumInstanceCount" in config
    runtime = entries(block_at(config, config.index("runtime:")))
    assert runtime == {"name": "'python'", "version": "'3.11'"}
    assert "systemAssigned: false" in site
    # The deployment container exists in the storage account the package is pulled from.
    storage = block_of(main, declarations(main, "module")["storage"])
    assert "{ name: deploymentStorageContainerName" in storage


def test_one_user_assigned_identity_for_everything():
    identities = [
        (path.name, name)
        for path in BICEP_FILES
        for name, m in declarations(code(path), "module").items()
        if "managed-identity/user-assigned-identity" in m.group(2)
    ]
    identities += [
        (path.name, name)
        for path in BICEP_FILES
        for name, m in declarations(code(path), "resource").items()
        if m.group(2).startswith("Microsoft.ManagedIdentity/userAssignedIdentities@")
    ]
    assert identities == [("main.bicep", "apiIdentity")]
    main = code(MAIN)
    assert "identityId: apiIdentity.outputs.resourceId" in main
    assert "identityClientId: apiIdentity.outputs.clientId" in main
    assert "managedIdentityPrincipalId: apiIdentity.outputs.principalId" in main
    for path in BICEP_FILES:
        assert "systemAssigned: true" not in code(path), path.name


def test_storage_is_keyless_with_the_container_and_queues_the_app_uses():
    main = code(MAIN)
    scope = vars_and_params(main)
    storage = block_of(main, declarations(main, "module")["storage"])
    assert "avm/res/storage/storage-account:" in declarations(main, "module")["storage"].group(2)
    assert "allowSharedKeyAccess: false" in storage
    assert "allowBlobPublicAccess: false" in storage
    containers = re.findall(r"\{ name: (\w+)", block_at(storage, storage.index("blobServices:")))
    queues = re.findall(r"\{ name: (\w+) \}", block_at(storage, storage.index("queueServices:")))
    defaults = Settings()
    assert string_value(containers[1], scope) == defaults.swarm_container == "swarms"
    assert [string_value(q, scope) for q in queues] == [
        defaults.swarm_queue,
        f"{defaults.swarm_queue}-poison",
    ]


def test_cosmos_is_serverless_keyless_with_the_adapters_containers():
    db = code(DB)
    account = block_of(db, declarations(db, "resource")["account"])
    assert (
        declarations(db, "resource")["account"]
        .group(2)
        .startswith("Microsoft.DocumentDB/databaseAccounts@")
    )
    assert "{ name: 'EnableServerless' }" in account
    assert "disableLocalAuth: true" in account
    assert "defaultConsistencyLevel: 'Strong'" in account, "workers read each other's node writes"
    containers = dict(re.findall(r"\{ name: '(\w+)', partitionKeyPath: '([^']+)' \}", db))
    assert containers == {"users": "/username", "swarms": "/user_id", "nodes": "/swarm_id"}
    assert containers == cosmos_adapter.PARTITION_KEYS
    loop = block_of(db, declarations(db, "resource")["sqlContainers"])
    assert "container.partitionKeyPath" in loop and "parent: database" in loop
    assert "var expiringContainers = ['users']" in db, "login attempts expire (CosmosAttemptStore)"
    assert "contains(expiringContainers, container.name) ? { defaultTtl: -1 } : {}" in loop
    # Each container indexes what the adapters' queries use, and nothing else.
    indexed = {
        name: tuple(re.findall(r"'([^']+)'", paths))
        for name, paths in re.findall(r"^  (\w+): \[([^\]]*)\]$", db, re.MULTILINE)
    }
    assert indexed == cosmos_adapter.INDEXED_PATHS
    assert "includedPaths: [for path in indexedPaths[container.name]: { path: path }]" in loop
    assert "excludedPaths: [\n              { path: '/*' }\n            ]" in loop
    main = code(MAIN)
    assert string_value("cosmosDatabaseName", vars_and_params(main)) == "swarmdb"
    assert Settings().cosmos_database == "swarmdb"


def test_web_pubsub_is_keyless_with_the_swarm_hub():
    wps = code(WEBPUBSUB)
    resources = declarations(wps, "resource")
    assert resources["webPubSub"].group(2).startswith("Microsoft.SignalRService/webPubSub@")
    assert "disableLocalAuth: true" in block_of(wps, resources["webPubSub"])
    assert resources["hub"].group(2).startswith("Microsoft.SignalRService/webPubSub/hubs@")
    assert "name: hubName" in block_of(wps, resources["hub"])
    main = code(MAIN)
    assert string_value("webPubSubHubName", vars_and_params(main)) == Settings().webpubsub_hub
    assert "hubName: webPubSubHubName" in main


def test_monitoring_is_log_analytics_and_keyless_app_insights():
    main = code(MAIN)
    modules = declarations(main, "module")
    assert "avm/res/operational-insights/workspace:" in modules["logAnalytics"].group(2)
    assert "avm/res/insights/component:" in modules["appInsights"].group(2)
    insights = block_of(main, modules["appInsights"])
    assert "disableLocalAuth: true" in insights
    assert "workspaceResourceId: logAnalytics.outputs.resourceId" in insights


def test_openai_is_optional_keyless_and_parameterised():
    main = code(MAIN)
    assert re.search(r"^param deployOpenAI bool = false$", main, re.MULTILINE)
    for name in ("openAIModelName", "openAIModelVersion", "openAIModelCapacity"):
        assert re.search(rf"^param {name} ", main, re.MULTILINE), name
    module = declarations(main, "module")["openAI"]
    assert module.group(2) == "app/openai.bicep" and module.group(4) == "deployOpenAI"
    openai = code(OPENAI)
    account = block_of(openai, declarations(openai, "resource")["account"])
    assert "kind: 'OpenAI'" in account
    assert "disableLocalAuth: true" in account
    assert "customSubDomainName:" in account  # Entra ID tokens need the custom domain
    deployment = block_of(openai, declarations(openai, "resource")["deployment"])
    assert "capacity: capacity" in deployment
    assert "name: modelName" in deployment and "version: modelVersion" in deployment


def test_no_key_or_connection_string_anywhere():
    files = [*BICEP_FILES, *INFRA.rglob("*.json"), ROOT / "azure.yaml"]
    files.append(ROOT / "scripts" / "write_local_settings.py")
    forbidden = re.compile(
        r"listKeys\(|listConnectionStrings\(|AccountKey=|SharedAccessKey|AccessKey=|"
        r"primaryMasterKey|primaryKey|COSMOS_KEY|WEBPUBSUB_CONNECTION_STRING|"
        r"AZURE_OPENAI_API_KEY|UseDevelopmentStorage",
        re.IGNORECASE,
    )
    for path in files:
        assert not forbidden.search(path.read_text()), (
            f"{path.name}: {forbidden.search(path.read_text())}"
        )
    for path in BICEP_FILES:
        for line in code(path).splitlines():
            if "connectionstring" in line.lower():
                # The one allowed: it locates App Insights and carries no credential.
                assert line.strip() == (
                    "APPLICATIONINSIGHTS_CONNECTION_STRING: "
                    "applicationInsights.properties.ConnectionString"
                ), f"{path.name}: {line.strip()}"


def test_local_auth_is_disabled_wherever_supported():
    keyless = {MAIN: "appInsights", DB: "account", WEBPUBSUB: "webPubSub", OPENAI: "account"}
    for path, symbol in keyless.items():
        text = code(path)
        found = {**declarations(text, "resource"), **declarations(text, "module")}
        assert "disableLocalAuth: true" in block_of(text, found[symbol]), (path.name, symbol)
    for path in BICEP_FILES:
        text = code(path)
        assert "disableLocalAuth: false" not in text, path.name
        assert "allowSharedKeyAccess: true" not in text, path.name


def test_auth_secret_is_a_secure_parameter_that_only_the_key_vault_gets():
    for path, decorators in ((MAIN, {"@secure()", "@minLength(32)"}), (KEYVAULT, {"@secure()"})):
        match = re.search(r"((?:^@.*\n)+)param authSecret string$", code(path), re.MULTILINE)
        assert match, path.name
        assert decorators <= set(match.group(1).splitlines()), path.name
    for path in BICEP_FILES:
        assert not re.search(r"^output .*authSecret\b", code(path), re.MULTILINE), path.name
    main = code(MAIN)
    receivers = [
        name
        for name, match in declarations(main, "module").items()
        if re.search(r"^\s+\w+: authSecret$", block_of(main, match), re.MULTILINE)
    ]
    assert receivers == ["keyVault"]
    assert not re.search(r"\bauthSecret\b", code(API))


def test_auth_secret_lives_in_a_key_vault_with_rbac_and_purge_protection():
    kv = code(KEYVAULT)
    resources = declarations(kv, "resource")
    assert resources["vault"].group(2).startswith("Microsoft.KeyVault/vaults@")
    vault = block_of(kv, resources["vault"])
    for line in (
        "enableRbacAuthorization: true",
        "enablePurgeProtection: true",
        "enableSoftDelete: true",
        "tenantId: subscription().tenantId",
    ):
        assert line in vault, line
    assert "accessPolicies" not in kv  # RBAC only
    assert resources["secret"].group(2).startswith("Microsoft.KeyVault/vaults/secrets@")
    secret = block_of(kv, resources["secret"])
    assert "parent: vault" in secret and "value: authSecret" in secret
    assert re.search(r"^output authSecretUri string = secret\.properties\.secretUri$", kv, re.M)

    main = code(MAIN)
    module = declarations(main, "module")["keyVault"]
    assert module.group(2) == "app/keyvault.bicep" and not module.group(4)
    assert "name: '${abbrs.keyVaultVaults}${resourceToken}'" in block_of(main, module)
    api_module = block_of(main, declarations(main, "module")["api"])
    assert "authSecretUri: keyVault.outputs.authSecretUri" in api_module
    assert re.search(r"dependsOn: \[\s+rbac\s+\]", api_module), "the role before the reference"

    # The app setting is a Key Vault reference, resolved as the user-assigned identity.
    expressions = settings_expressions()["appSettings"]
    assert expressions["AUTH_SECRET"] == "'@Microsoft.KeyVault(SecretUri=${authSecretUri})'"
    site = block_of(code(API), declarations(code(API), "module")["functionApp"])
    assert "keyVaultAccessIdentityResourceId: identityId" in site


# --- (a) role assignments ----------------------------------------------------------------------


@dataclass(frozen=True)
class RoleAssignment:
    """One role assignment of rbac.bicep, as written."""

    symbol: str
    kind: str
    condition: str  # the `if (...)` of the declaration, "" when unconditional
    name: str
    scope: str  # the symbolic resource it is on (`scope:`, or `parent:` for Cosmos)
    principal: str
    role_var: str  # the variable holding the role definition id
    role_definition_id: str
    data_scope: str  # Cosmos only: the scope inside the account
    comment: str  # first line of the comment above the declaration

    @property
    def is_cosmos(self) -> bool:
        return "/sqlRoleAssignments@" in self.kind


def role_assignments() -> list[RoleAssignment]:
    raw, text = RBAC.read_text(), code(RBAC)
    found = []
    for symbol, match in declarations(text, "resource").items():
        kind, existing, condition = match.group(2), match.group(3), match.group(4) or ""
        if existing or not re.search(r"/(roleAssignments|sqlRoleAssignments)@", kind):
            continue
        block = block_of(text, match)
        body = entries(block)
        props = entries(block_at(block, block.index("properties:")))
        role_var = re.findall(r"\w+", props["roleDefinitionId"])[-1]
        before = raw[: raw.index(f"resource {symbol} ")].rstrip().splitlines()
        comment: list[str] = []
        while before and before[-1].startswith("//"):
            comment.insert(0, before.pop())
        found.append(
            RoleAssignment(
                symbol=symbol,
                kind=kind,
                condition=condition,
                name=body["name"],
                scope=body.get("scope") or body["parent"],
                principal=props["principalId"],
                role_var=role_var,
                role_definition_id=props["roleDefinitionId"],
                data_scope=props.get("scope", ""),
                comment=comment[0] if comment else "",
            )
        )
    return found


def role_variables() -> dict[str, str]:
    """rbac.bicep's role id variables: name -> GUID."""
    return {
        name: value.strip("'")
        for name, value in vars_and_params(code(RBAC)).items()
        if re.fullmatch(r"'[0-9a-f-]{36}'", value)
    }


def test_every_role_assignment_is_in_rbac_bicep():
    for path in BICEP_FILES:
        if path == RBAC:
            continue
        text = code(path)
        assert "roleAssignments" not in text and "sqlRoleAssignments" not in text, path.name


def test_role_assignments_are_named_by_scope_principal_and_role():
    variables = role_variables()
    role_names = {role_id: name for name, role_id in ROLE_IDS.items()}
    role_names[COSMOS_DATA_CONTRIBUTOR] = "Cosmos DB Built-in Data Contributor"
    role_names[KEY_VAULT_SECRETS_USER] = "Key Vault Secrets User"
    assignments = role_assignments()
    # 6 roles (5 Azure RBAC + Cosmos) x (app identity, developer), and the app's secret reader.
    assert len(assignments) == 13
    for a in assignments:
        assert a.role_var in variables, a
        assert a.name == f"guid({a.scope}.id, {a.principal}, {a.role_var})", a
        assert a.principal in (APP_PRINCIPAL, USER_PRINCIPAL), a
        assert a.comment.startswith(f"// {role_names[variables[a.role_var]]} → "), a
        if not a.is_cosmos:
            assert a.role_definition_id == (
                f"subscriptionResourceId('Microsoft.Authorization/roleDefinitions', {a.role_var})"
            ), a
        if a.principal == USER_PRINCIPAL:
            assert "grantUser" in a.condition, a


def test_the_app_identity_and_the_developer_get_every_role_the_app_needs():
    variables = role_variables()
    granted = {
        (variables[a.role_var], a.scope, a.principal, a.condition) for a in role_assignments()
    }
    for role, role_id in ROLE_IDS.items():
        openai_only = role == "Cognitive Services OpenAI User"
        scope = ROLE_SCOPES[role]
        assert (role_id, scope, APP_PRINCIPAL, "withOpenAI" if openai_only else "") in granted
        user_condition = "grantUser && withOpenAI" if openai_only else "grantUser"
        assert (role_id, scope, USER_PRINCIPAL, user_condition) in granted, role
    assert (COSMOS_DATA_CONTRIBUTOR, "cosmos", APP_PRINCIPAL, "") in granted
    assert (COSMOS_DATA_CONTRIBUTOR, "cosmos", USER_PRINCIPAL, "grantUser") in granted
    # AUTH_SECRET: the app's identity reads it from the vault; nobody else is granted it.
    readers = {(scope, who) for role, scope, who, _ in granted if role == KEY_VAULT_SECRETS_USER}
    assert readers == {("keyVault", APP_PRINCIPAL)}


def test_cosmos_role_assignments_use_the_full_sql_role_definition_id():
    cosmos = [a for a in role_assignments() if a.is_cosmos]
    assert len(cosmos) == 2
    for a in cosmos:
        assert a.role_definition_id == "'${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'"
        assert a.data_scope == "cosmos.id"  # the whole account: all three containers
    assert role_variables()["cosmosDataContributor"] == COSMOS_DATA_CONTRIBUTOR


def test_rbac_gets_the_deployed_resources_and_the_developer():
    main = code(MAIN)
    module = block_of(main, declarations(main, "module")["rbac"])
    arguments = entries(block_at(module, module.index("params:")))
    assert arguments["userPrincipalId"] == "allowUserIdentityPrincipal ? principalId : ''"
    assert arguments["openAIAccountName"] == "deployOpenAI ? openAI.outputs.accountName : ''"
    assert re.search(r"^param allowUserIdentityPrincipal bool = true$", main, re.MULTILINE)
    assert re.search(r"^param principalId string = ''$", main, re.MULTILINE)


# --- (a) azd: azure.yaml, parameters, outputs --------------------------------------------------


def test_azure_yaml_deploys_the_api_and_writes_local_settings():
    text = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n  api:\n((?:    .*\n)+)", text, re.MULTILINE)
    assert service, "azure.yaml needs service `api`"
    lines = {line.strip() for line in service.group(1).splitlines()}
    assert {"project: .", "language: python", "host: function"} <= lines
    postprovision = text.split("postprovision:", 1)[1]
    assert "python3 scripts/write_local_settings.py" in postprovision.split("windows:")[0]
    assert "python scripts/write_local_settings.py" in postprovision.split("windows:")[1]
    assert "azd env set AUTH_SECRET" in text.split("preprovision:", 1)[1].split("postprovision:")[0]


def test_main_parameters_cover_every_required_parameter():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = params_declared(code(MAIN))
    assert set(parameters) <= set(declared)
    required = {name for name, default in declared.items() if default is None}
    assert required == {"environmentName", "location", "authSecret"}
    assert required <= set(parameters)
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["authSecret"]["value"] == "${AUTH_SECRET}"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "write_local_settings", ROOT / "scripts" / "write_local_settings.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_outputs() -> dict[str, str]:
    return dict(re.findall(r"^output (\w+) string = (.+)$", code(MAIN), re.MULTILINE))


def test_outputs_name_what_the_local_settings_hook_reads():
    script = load_script()
    outputs = main_outputs()
    for name in (*script.REQUIRED_OUTPUTS, *script.OPENAI_OUTPUTS):
        assert name in outputs, name
    # In the azd environment AZURE_CLIENT_ID would pin the developer's credential to an identity
    # that exists only in Azure.
    assert "AZURE_CLIENT_ID" not in outputs
    assert outputs["AzureWebJobsStorage__blobServiceUri"] == "api.outputs.blobServiceUri"


# --- (b) the app runs with exactly these settings ----------------------------------------------


def test_every_setting_is_read_by_the_app_or_the_host():
    known = settings_aliases() | llm_setting_names() | HOST_SETTINGS
    known |= binding_references()[0]
    for block, values in settings_expressions().items():
        unknown = set(values) - known
        assert not unknown, f"{block}: nobody reads {sorted(unknown)}"


def test_every_binding_expression_and_connection_is_an_identity_setting():
    expressions, connections = binding_references()
    settings = app_settings("offlineLLM")
    assert expressions and expressions <= set(settings), expressions - set(settings)
    assert connections == {"AzureWebJobsStorage"}
    for connection in connections:
        assert connection not in settings  # no connection string: the identity form only
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__clientId"] == CLIENT_ID
        assert settings[f"{connection}__queueServiceUri"].startswith("https://")
        assert settings[f"{connection}__blobServiceUri"].startswith("https://")
    expressions_raw = settings_expressions()["appSettings"]
    assert expressions_raw["AZURE_CLIENT_ID"] == expressions_raw["AzureWebJobsStorage__clientId"]
    assert expressions_raw["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "'ClientId=${" + expressions_raw["AZURE_CLIENT_ID"] + "};Authorization=AAD'"
    )


def test_the_settings_load_in_production_in_managed_identity_form(app_environment):
    values = app_settings("offlineLLM")
    app_environment(values)
    settings = Settings()
    assert settings.environment == "production"  # and so AUTH_SECRET passed the prod validator
    assert settings.uses_managed_identity
    assert settings.storage_connection_string is None
    assert settings.cosmos_key is None
    assert settings.webpubsub_connection_string is None
    assert settings.azure_client_id == CLIENT_ID
    assert settings.swarm_queue == "swarm-operations"
    assert settings.swarm_container == "swarms"
    assert settings.cosmos_database == "swarmdb"
    assert settings.webpubsub_hub == "swarm"
    assert str(settings.storage_blob_uri) == PLACEHOLDERS["AzureWebJobsStorage__blobServiceUri"]
    assert str(settings.storage_queue_uri) == PLACEHOLDERS["AzureWebJobsStorage__queueServiceUri"]


def test_every_client_is_built_with_the_managed_identity(app_environment, monkeypatch):
    app_environment(app_settings("offlineLLM"))
    settings = Settings()

    # Cosmos DB: a TokenCredential, never a key (the factory records instead of connecting).
    seen: dict[str, Any] = {}

    def cosmos_factory(endpoint: str, credential: Any, **options: Any) -> object:
        seen.update(endpoint=endpoint, credential=credential)
        return object()

    cosmos_adapter.CosmosClients(settings, client_factory=cosmos_factory).client()
    assert seen["endpoint"] == PLACEHOLDERS["COSMOS_ENDPOINT"]
    assert isinstance(seen["credential"], DefaultAzureCredential)

    # Blob and Queue: service clients on the account URIs with the credential, no account key.
    blob = build_blob_service(settings)
    assert blob.url == PLACEHOLDERS["AzureWebJobsStorage__blobServiceUri"]
    assert isinstance(blob.credential, DefaultAzureCredential)
    queue = build_queue_service(settings)
    assert queue.url == PLACEHOLDERS["AzureWebJobsStorage__queueServiceUri"]
    assert isinstance(queue.credential, DefaultAzureCredential)

    # Web PubSub: the real service client, built from endpoint + credential (no access key).
    built: dict[str, Any] = {}
    real_client = webpubsub_adapter.WebPubSubServiceClient

    def recording_client(**kwargs: Any) -> Any:
        built.update(kwargs)
        return real_client(**kwargs)

    monkeypatch.setattr(webpubsub_adapter, "WebPubSubServiceClient", recording_client)
    build_publisher(settings).publish("swarm-1", [])  # builds the client, sends nothing
    assert built["endpoint"] == PLACEHOLDERS["WEBPUBSUB_ENDPOINT"]
    assert built["hub"] == "swarm"
    assert isinstance(built["credential"], DefaultAzureCredential)

    # Without a deployed model the app runs the offline LLM.
    assert isinstance(build_llm(Settings()), OfflineScriptedLLM)


def test_azure_openai_is_called_with_an_entra_id_token(app_environment):
    app_environment(app_settings("azureOpenAI"))
    llm = build_llm(Settings())
    assert isinstance(llm, OpenAIChatModel)
    assert llm.provider == "azure_openai"
    assert llm.default_model == PLACEHOLDERS["AZURE_OPENAI_DEPLOYMENT"]
    assert str(llm.client.base_url).startswith(PLACEHOLDERS["AZURE_OPENAI_ENDPOINT"])
    assert LLMProviderSettings().azure_openai_api_key is None
    assert llm.client._azure_ad_token_provider is not None  # type: ignore[attr-defined]


def test_the_whole_runtime_builds_from_these_settings_without_connecting(app_environment):
    app_environment(app_settings("offlineLLM"))
    app = build_azure(Settings())  # production: creates no resources, connects lazily
    assert app.settings.environment == "production"


# --- the post-provision hook -------------------------------------------------------------------


def azd_values() -> dict[str, str]:
    """What `azd env get-values` holds after provisioning: main.bicep's outputs."""
    fixed = vars_and_params(code(MAIN))
    values = {}
    for name, expr in main_outputs().items():
        value = string_value(expr, fixed)
        values[name] = value if value is not None else PLACEHOLDERS.get(name, f"<{name}>")
    values["LLM_PROVIDER"] = "offline"
    return values


def test_the_hook_writes_keyless_developer_settings_the_app_loads(app_environment):
    script = load_script()
    document = script.build_local_settings(azd_values())
    assert document["IsEncrypted"] is False
    local = document["Values"]
    assert local["FUNCTIONS_WORKER_RUNTIME"] == "python"
    # The developer signs in as themselves: no managed-identity pinning locally.
    assert not {"AZURE_CLIENT_ID", "AzureWebJobsStorage__credential"} & set(local)
    assert not any(name.endswith("__clientId") for name in local)
    app_environment(local)
    settings = Settings()
    assert settings.environment == "development"
    assert settings.uses_managed_identity and settings.azure_client_id is None
    assert settings.cosmos_endpoint == PLACEHOLDERS["COSMOS_ENDPOINT"]
    assert settings.webpubsub_endpoint == PLACEHOLDERS["WEBPUBSUB_ENDPOINT"]
    assert len(settings.auth_secret) >= 32
    assert isinstance(build_llm(Settings()), OfflineScriptedLLM)


def test_the_hook_copies_the_openai_settings_when_a_model_is_deployed():
    script = load_script()
    values = {**azd_values(), "LLM_PROVIDER": "azure_openai"}
    local = script.build_local_settings(values)["Values"]
    assert local["LLM_PROVIDER"] == "azure_openai"
    assert local["AZURE_OPENAI_ENDPOINT"] == PLACEHOLDERS["AZURE_OPENAI_ENDPOINT"]
    assert local["AZURE_OPENAI_API_VERSION"] == "2024-10-21"


def test_the_hook_parses_azd_output_and_never_overwrites_silently(tmp_path):
    script = load_script()
    env_file = tmp_path / "azd.env"
    lines = [f'{name}="{value}"' for name, value in azd_values().items()]
    env_file.write_text("\n".join([*lines, 'QUOTED="a \\"b\\" \\\\c"']) + "\n")
    assert script.parse_env_values(env_file.read_text())["QUOTED"] == 'a "b" \\c'

    target = tmp_path / "local.settings.json"
    assert script.main(["--env-file", str(env_file), "--output", str(target)]) == 0
    written = json.loads(target.read_text())
    assert written["Values"]["COSMOS_ENDPOINT"] == PLACEHOLDERS["COSMOS_ENDPOINT"]

    target.write_text("{}")
    assert script.main(["--env-file", str(env_file), "--output", str(target)]) == 0
    assert target.read_text() == "{}"
    assert script.main(["--env-file", str(env_file), "--output", str(target), "--force"]) == 0
    assert json.loads(target.read_text())["Values"]["SWARM_ENV"] == "development"


def test_the_hook_refuses_an_unprovisioned_environment(tmp_path):
    script = load_script()
    env_file = tmp_path / "azd.env"
    env_file.write_text('AZURE_ENV_NAME="dev"\n')
    target = tmp_path / "local.settings.json"
    assert script.main(["--env-file", str(env_file), "--output", str(target)]) == 1
    assert not target.exists()

// The console's shell: log in or sign up, then the spawn page (#/) or a swarm (#/swarms/<id>).
// Hash routes, so the function app serves one page and every path stays its own.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, errorText, session } from "./api";
import { SwarmList } from "./swarms";
import { SwarmPage } from "./swarm";
import type { TokenResponse } from "./types";
import "./style.css";

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function useSession(): string | null {
  const [token, setToken] = useState(session.token);
  useEffect(() => session.subscribe(() => setToken(session.token)), []);
  return token;
}

function Login() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (kind: "login" | "signup") => {
    setBusy(true);
    setError("");
    try {
      session.start(await api<TokenResponse>("POST", `/auth/${kind}`, { username, password }));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>Swarm console</h1>
      <p class="muted">Run agent swarms: give a goal, answer their questions, read the report.</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit("login");
        }}
      >
        <label>
          Username
          <input name="username" autocomplete="username" value={username} onInput={(e) => setUsername(e.currentTarget.value)} required />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
        </label>
        {error ? <p class="error" role="alert">{error}</p> : null}
        <div class="row">
          <button type="submit" disabled={busy}>Log in</button>
          <button type="button" class="secondary" disabled={busy} onClick={() => void submit("signup")}>
            Sign up
          </button>
        </div>
      </form>
    </main>
  );
}

function App() {
  const token = useSession();
  const hash = useHash();
  if (!token) return <Login />;
  // Swarm ids are letters, digits, `-` and `_`: anything else in the link names no swarm (and
  // never reaches an API path, where `..` or `/` would name another route).
  const match = /^#\/swarms\/([A-Za-z0-9_-]+)$/.exec(hash);
  const logout = async () => {
    try {
      await api("POST", "/auth/logout");
    } finally {
      session.end();
    }
  };
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">Swarm console</a>
        <span class="spacer" />
        <span class="muted" data-testid="username">{session.username}</span>
        <button class="secondary small" onClick={() => void logout()}>Log out</button>
      </header>
      {match ? <SwarmPage key={match[1]} swarmId={match[1]} /> : <SwarmList />}
    </>
  );
}

render(<App />, document.getElementById("app")!);

// The one way the console talks to the backend: JSON over `/api`, with the bearer token of the
// session. The token lives in sessionStorage (this tab only), never in a URL.

import type { TokenResponse } from "./types";

const TOKEN_KEY = "swarm.console.token";
const USER_KEY = "swarm.console.username";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Record<string, any> | null,
  ) {
    super(describe(status, problem));
  }
}

function describe(status: number, problem: Record<string, any> | null): string {
  if (!problem) return `HTTP ${status}`;
  if (Array.isArray(problem.errors) && problem.errors.length) {
    return problem.errors
      .map((e: any) => `${(e.loc ?? []).join(".") || "body"}: ${e.msg}`)
      .join("; ");
  }
  return problem.detail || problem.title || `HTTP ${status}`;
}

type Listener = () => void;
const listeners = new Set<Listener>();

export const session = {
  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  get username(): string | null {
    return sessionStorage.getItem(USER_KEY);
  },
  start(answer: TokenResponse): void {
    sessionStorage.setItem(TOKEN_KEY, answer.access_token);
    sessionStorage.setItem(USER_KEY, answer.username);
    listeners.forEach((l) => l());
  },
  end(): void {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    listeners.forEach((l) => l());
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    // An expired or revoked token: back to the login form.
    if (response.status === 401 && token && !path.startsWith("/auth/")) session.end();
    throw new ApiError(response.status, parsed);
  }
  return parsed as T;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

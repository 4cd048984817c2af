#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { check } from './check.ts';
import { operatorContext } from './context.ts';
import { err, out, UsageError } from './io.ts';
import { keys } from './keys.ts';
import { login, logout, token } from './login.ts';
import { serve } from './serve.ts';
import { sessions } from './sessions.ts';
import { users } from './users.ts';

const HELP = `gatehouse: an identity-aware reverse proxy

Usage:
  gatehouse serve [--config gatehouse.yaml]                 run a node (SIGTERM/SIGINT drain, SIGHUP reloads listen.tls)
  gatehouse check [--config f]                              validate; print warnings and the redirect URIs to register
  gatehouse check [--config f] --explain URL [--method M]   which app and rule decide URL, and why
  gatehouse users add <email> [--name N] [--groups a,b] [--json]   password from a prompt or stdin
  gatehouse users list [--json]
  gatehouse users disable|enable <email>                    disabling ends the user's sessions and CLI/MCP logins
  gatehouse users set-password <email>                      from a prompt or stdin; ends the user's sessions and CLI/MCP logins
  gatehouse users set-groups <email> <a,b>
  gatehouse sessions list --user <email> [--json]           browser sessions and CLI/MCP logins
  gatehouse sessions revoke [id] --user <email>             one (by id prefix), or all of them
  gatehouse keys list [--json]                              signing keys: state, when each signs and is dropped
  gatehouse keys rotate [--algorithm EdDSA|ES256]           add a key: published now, signs after tokens.keys.publishBefore
  gatehouse keys rotate --now                               a leaked key: the new one signs at once, the others are unpublished

For CLI users of an app behind Gatehouse (no config file needed):
  gatehouse login <url> [--no-browser]                      sign in with the device flow; tokens kept in ~/.config/gatehouse/
  gatehouse token <url>                                     print a valid access token: curl -H "Authorization: Bearer $(gatehouse token URL)" URL
  gatehouse logout <url>                                    revoke the login and forget it

The config file is --config (-c), else $GATEHOUSE_CONFIG, else ./gatehouse.yaml; users, sessions
and keys work on the store it names. A user is named by email or id. --help (-h) shows this.`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    allowNegative: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      explain: { type: 'string' },
      method: { type: 'string' },
      name: { type: 'string' },
      groups: { type: 'string' },
      user: { type: 'string' },
      json: { type: 'boolean' },
      now: { type: 'boolean' },
      algorithm: { type: 'string' },
      browser: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  const file = values.config ?? process.env.GATEHOUSE_CONFIG ?? 'gatehouse.yaml';
  if (values.help || !command) {
    out(HELP);
    return command || values.help ? 0 : 2;
  }
  switch (command) {
    case 'serve':
      return serve(file);
    case 'check':
      return check(file, values);
    case 'login':
      return login(rest[0], values);
    case 'token':
      return token(rest[0]);
    case 'logout':
      return logout(rest[0]);
    case 'users':
    case 'sessions':
    case 'keys': {
      const ctx = await operatorContext(file);
      try {
        if (command === 'keys') return await keys(ctx, rest, values);
        return command === 'users' ? await users(ctx, rest, values) : await sessions(ctx, rest, values);
      } finally {
        await ctx.close();
      }
    }
    default:
      throw new UsageError(`unknown command "${command}"; see gatehouse --help`);
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== 0 || process.exitCode) process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        err(`gatehouse: ${(e as Error).message}`);
        process.exitCode = 2;
      } else if ((e as Error).name === 'ConfigError') {
        err((e as Error).message);
        process.exitCode = 2;
      } else {
        err(`gatehouse: ${(e as Error).message}`);
        process.exitCode = 1;
      }
    },
  );
}

#!/usr/bin/env node
// cli/: the gatehouse command: every command's options and usage (this file), check and its lint, serve,
// users, sessions, keys, backup, and login/token/logout for the users of an app. The only importer of server/.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { closest } from '../config/suggest.ts';
import { err, out, UsageError } from './io.ts';
import { reexecWithV8Flags } from './v8-flags.ts';

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  explain: { type: 'string' },
  connect: { type: 'boolean' },
  from: { type: 'string' },
  method: { type: 'string' },
  name: { type: 'string' },
  groups: { type: 'string' },
  user: { type: 'string' },
  json: { type: 'boolean' },
  now: { type: 'boolean' },
  algorithm: { type: 'string' },
  browser: { type: 'boolean' },
  force: { type: 'boolean' },
  yes: { type: 'boolean' },
  all: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  header: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  // gatehouse audit, export (issue 16)
  since: { type: 'string' },
  event: { type: 'string' },
  limit: { type: 'string' },
  to: { type: 'string' },
} as const;
type Option = keyof typeof OPTIONS;

interface Command {
  /** Each form of the command, and what it does. */
  usage: [string, string][];
  options: Option[];
  subcommands?: string[];
  /** The argument the command cannot do without. */
  argument?: string;
  /** Run by the users of an app (no config file), not by its operators. */
  client?: true;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: [['serve [--config gatehouse.yaml]', 'run a node (SIGTERM/SIGINT drain, SIGHUP reloads listen.tls)']],
    options: ['config'],
  },
  check: {
    usage: [
      ['check [--config f]', 'validate; print warnings and the redirect URIs to register'],
      [
        'check [--config f] --connect',
        'also reach the store, Redis, upstreams, providers, SMTP, events URLs and federated issuers from here; exit 1 if one fails',
      ],
      [
        'check [--config f] --explain URL [--method M] [--from IP]',
        'which app and rule decide URL (for a client at IP), and why',
      ],
    ],
    options: ['config', 'explain', 'method', 'from', 'connect'],
  },
  users: {
    usage: [
      ['users add <email> [--name N] [--groups a,b] [--json]', 'password from a prompt or stdin'],
      ['users list [--json]', ''],
      ['users disable|enable <email>', "disabling ends the user's sessions and CLI/MCP logins"],
      ['users set-password <email>', "from a prompt or stdin; ends the user's sessions and CLI/MCP logins"],
      ['users set-groups <email> <a,b>', ''],
      [
        'users reset-mfa <email>',
        "removes the user's passkeys, authenticator app and recovery codes; ends their sessions and CLI/MCP logins",
      ],
      [
        'users invite <email> [--groups a,b] [--name N] [--json]',
        'mails a single-use link to choose a password (printed without email configured)',
      ],
      [
        'users import <file.jsonl | keycloak-realm.json> [--dry-run] [--json]',
        'users of another system, one JSON object a line (email, name, groups, emailVerified, passwordHash, id), or a Keycloak realm export',
      ],
      [
        'users delete <email> --yes',
        'deletes the user: sessions, CLI/MCP logins, linked providers, second factors; cannot be undone',
      ],
    ],
    options: ['config', 'name', 'groups', 'json', 'yes', 'dry-run'],
    subcommands: [
      'add',
      'list',
      'disable',
      'enable',
      'set-password',
      'set-groups',
      'reset-mfa',
      'invite',
      'import',
      'delete',
    ],
  },
  sessions: {
    usage: [
      ['sessions list --user <email> [--json]', 'browser sessions and CLI/MCP logins'],
      ['sessions revoke [id] --user <email>', 'one (by id prefix), or all of them'],
      ['sessions revoke --all --yes', "every user's: everyone signs in again (after a leak)"],
    ],
    options: ['config', 'user', 'json', 'all', 'yes'],
    subcommands: ['list', 'revoke'],
  },
  keys: {
    usage: [
      ['keys list [--json]', 'signing keys: state, when each signs and is dropped'],
      ['keys rotate [--algorithm EdDSA|ES256]', 'add a key: published now, signs after tokens.keys.publishBefore'],
      ['keys rotate --now', 'a leaked key: the new one signs at once, the others are unpublished'],
    ],
    options: ['config', 'json', 'now', 'algorithm'],
    subcommands: ['list', 'rotate'],
  },
  clients: {
    usage: [
      [
        'clients list [--json]',
        'OAuth clients (built-in, configured, registered, metadata documents) and their live logins',
      ],
      [
        'clients remove <id>',
        'a registered client (or the logins of a metadata-document client), with every login it holds',
      ],
    ],
    options: ['config', 'json'],
    subcommands: ['list', 'remove'],
  },
  events: {
    usage: [
      ['events list [--json]', 'events for apps not taken yet (docs/events.md): the last error, the next attempt'],
      ['events send', 'try every waiting event now (once the app is back)'],
    ],
    options: ['config', 'json'],
    subcommands: ['list', 'send'],
  },
  audit: {
    usage: [
      [
        'audit [--user X] [--since 24h] [--event login] [--json]',
        'security events: sign-ins, changes, operator commands (--limit N, default 1000)',
      ],
    ],
    options: ['config', 'user', 'since', 'event', 'json', 'limit'],
  },
  export: {
    usage: [
      [
        'export --to FILE [--force]',
        'the whole store as JSON lines (keys and tokens stay encrypted): to move SQLite ⇄ PostgreSQL',
      ],
    ],
    options: ['config', 'to', 'force'],
  },
  import: {
    usage: [['import FILE [--force]', 'into an empty store (--force: replace what is there); counts checked']],
    options: ['config', 'force'],
    argument: 'FILE',
  },
  backup: {
    usage: [['backup <file> [--force]', 'copy the SQLite store while it runs (a secret: it holds the master key)']],
    options: ['config', 'force'],
    argument: '<file>',
  },
  login: {
    usage: [['login <url> [--no-browser]', 'sign in with the device flow; tokens kept in ~/.config/gatehouse/']],
    options: ['browser'],
    client: true,
  },
  token: {
    usage: [
      ['token <url>', 'print a valid access token: curl -H "Authorization: Bearer $(gatehouse token URL)" URL'],
      [
        'token <url> --header',
        'print it as a header line, in the app\'s own token header if it has one: curl -H "$(gatehouse token URL --header)" URL',
      ],
    ],
    options: ['header'],
    client: true,
  },
  logout: {
    usage: [['logout <url>', 'revoke the login and forget it']],
    options: [],
    client: true,
  },
};

const CONFIG_NOTE = `The config file is --config (-c), else $GATEHOUSE_CONFIG, else ./gatehouse.yaml; users, sessions,
keys and backup work on the store it names.`;

function usageLines(commands: Command[]): string {
  return commands
    .flatMap((c) => c.usage)
    .map(([form, what]) => `  ${`gatehouse ${form}`.padEnd(56)}  ${what}`.trimEnd())
    .join('\n');
}

const all = Object.values(COMMANDS);
const HELP = `gatehouse: an identity-aware reverse proxy

Usage:
${usageLines(all.filter((c) => !c.client))}

For CLI users of an app behind Gatehouse (no config file needed):
${usageLines(all.filter((c) => c.client))}

${CONFIG_NOTE} A user is named by email or id.
--help (-h) shows this, or a command's usage after it (gatehouse users --help); --version (-v) the version.`;

function usageOf(name: string): string {
  const command = COMMANDS[name]!;
  return `Usage:\n${usageLines([command])}${command.client ? '' : `\n\n${CONFIG_NOTE}`}`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `gatehouse ${pkg.version}`;
}

/**
 * Reads the command line: which command, its options, and that every option is one of the
 * command's. Anything wrong is a UsageError that carries the command's usage, found before
 * a config file is read.
 */
function readArgs(argv: string[]) {
  // Not strict: unknown options come back as tokens, so they can be named with a suggestion.
  const { tokens, positionals } = parseArgs({
    args: argv,
    options: OPTIONS,
    allowPositionals: true,
    allowNegative: true,
    strict: false,
    tokens: true,
  });
  const [name, ...rest] = positionals;
  const command = name === undefined ? undefined : COMMANDS[name];
  if (name !== undefined && !command) {
    const near = closest(name, Object.keys(COMMANDS));
    throw new UsageError(`unknown command "${name}"${near ? `; did you mean "${near}"?` : ''}`, HELP);
  }
  const allowed: Option[] = ['help', 'version', ...(command?.options ?? [])];
  const usage = name === undefined ? HELP : usageOf(name);
  const values: Partial<Record<Option, string | boolean>> = {};
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const option = t.name as Option;
    const spec = OPTIONS[option] as { type: 'string' | 'boolean' } | undefined;
    if (!spec || !allowed.includes(option) || (t.rawName.startsWith('--no-') && spec.type === 'string')) {
      const near = closest(t.rawName.replace(/^-+/, ''), command?.options ?? []);
      throw new UsageError(
        `unknown option ${t.rawName}${name ? ` for gatehouse ${name}` : ''}${near ? `; did you mean --${near}?` : ''}`,
        usage,
      );
    }
    if (spec.type === 'string' && t.value === undefined) throw new UsageError(`${t.rawName} needs a value`, usage);
    if (spec.type === 'boolean' && t.inlineValue) throw new UsageError(`${t.rawName} takes no value`, usage);
    values[option] = spec.type === 'string' ? t.value! : !t.rawName.startsWith('--no-');
  }
  if (command?.argument && rest.length === 0 && !values.help && !values.version)
    throw new UsageError(`${name} needs ${command.argument}`, usage);
  if (command?.subcommands && !values.help && !values.version) {
    const [sub] = rest;
    if (sub === undefined) throw new UsageError(`${name} needs a command: ${command.subcommands.join(', ')}`, usage);
    if (!command.subcommands.includes(sub)) {
      const near = closest(sub, command.subcommands);
      throw new UsageError(`unknown command "${name} ${sub}"${near ? `; did you mean "${name} ${near}"?` : ''}`, usage);
    }
  }
  return {
    name,
    rest,
    values: values as { [K in Option]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean },
    usage,
  };
}

export async function main(argv: string[]): Promise<number> {
  const { name, rest, values, usage } = readArgs(argv);
  if (values.version) {
    out(version());
    return 0;
  }
  if (values.help || name === undefined) {
    out(usage);
    return name !== undefined || values.help ? 0 : 2;
  }
  const file = values.config ?? process.env.GATEHOUSE_CONFIG ?? 'gatehouse.yaml';
  // Each command's code is loaded when it runs: `serve` re-executes itself first (v8-flags.ts),
  // before loading the rest, and the others load only what they use.
  switch (name) {
    case 'serve':
      reexecWithV8Flags();
      return (await import('./serve.ts')).serve(file);
    case 'check':
      return (await import('./check.ts')).check(file, values);
    case 'backup':
      return (await import('./backup.ts')).backup(file, rest, values);
    case 'export':
      return (await import('./transfer.ts')).exportStore(file, values);
    case 'import':
      return (await import('./transfer.ts')).importStore(file, rest, values);
    case 'login':
      return (await import('./login.ts')).login(rest[0], values);
    case 'token':
      return (await import('./login.ts')).token(rest[0], undefined, values);
    case 'logout':
      return (await import('./login.ts')).logout(rest[0]);
    default: {
      const ctx = await (await import('./context.ts')).operatorContext(file);
      try {
        if (name === 'audit') return await (await import('./audit.ts')).audit(ctx, values);
        // Every operator command that changes something is audited, with the OS user who ran it.
        let code = 1;
        const { auditCommand, auditedUser } = await import('./audit.ts');
        const userId = await auditedUser(ctx, name, rest, values);
        try {
          code =
            name === 'keys'
              ? await (await import('./keys.ts')).keys(ctx, rest, values)
              : name === 'users'
                ? await (await import('./users.ts')).users(ctx, rest, values)
                : name === 'events'
                  ? await (await import('./events.ts')).events(ctx, rest, values)
                  : name === 'clients'
                    ? await (await import('./clients.ts')).clients(ctx, rest, values)
                    : await (await import('./sessions.ts')).sessions(ctx, rest, values);
          return code;
        } finally {
          await auditCommand(ctx, name, rest, values, code === 0 ? 'success' : 'failure', userId).catch((e: Error) =>
            err(`gatehouse: the audit trail could not record this command: ${e.message}`),
          );
        }
      } finally {
        await ctx.close();
      }
    }
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== 0 || process.exitCode) process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof UsageError) {
        err(`gatehouse: ${e.message}`);
        if (e.usage) err(`\n${e.usage}`);
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

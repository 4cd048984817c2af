import { escapeHtml } from '../pages/html.ts';

/**
 * The messages Gatehouse mails, each as plain text and simple HTML (no images, no remote
 * resources, no tracking), in the name of the app's title. Every value is escaped for HTML
 * and stripped of control characters (no header or line injection through a title or name).
 */

export interface Rendered {
  subject: string;
  text: string;
  html: string;
}

const clean = (s: string) => s.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ').trim();

/** "30 minutes", "24 hours", "1 hour", "7 days": the largest whole unit (days from 2 on). */
export function humanDuration(ms: number): string {
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (ms >= 2 * 86_400_000 && ms % 86_400_000 === 0) return plural(ms / 86_400_000, 'day');
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return plural(ms / 3_600_000, 'hour');
  if (ms >= 60_000) return plural(Math.round(ms / 60_000), 'minute');
  return plural(Math.max(1, Math.round(ms / 1000)), 'second');
}

/** Paragraphs of text (and one link) as both forms. `{link}` marks where the link goes. */
function render(
  appTitle: string,
  subject: string,
  paragraphs: string[],
  link?: { url: string; label: string },
): Rendered {
  const title = clean(appTitle);
  const text = [...paragraphs.map((p) => (p === '{link}' && link ? link.url : p)), `— ${title}`].join('\n\n') + '\n';
  const body = paragraphs
    .map((p) =>
      p === '{link}' && link
        ? `<p style="margin:24px 0"><a href="${escapeHtml(link.url)}" style="display:inline-block;padding:10px 18px;background:#2557d6;color:#ffffff;text-decoration:none;border-radius:6px;font-weight:600">${escapeHtml(link.label)}</a></p>
<p style="font-size:13px;color:#5b6470">Or copy this address into your browser:<br><span style="word-break:break-all">${escapeHtml(link.url)}</span></p>`
        : `<p>${escapeHtml(p)}</p>`,
    )
    .join('\n');
  const html = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(subject)}</title></head>
<body style="margin:0;padding:24px;background:#f5f6f8;color:#1b1f24;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif">
<div style="max-width:32rem;margin:0 auto;background:#ffffff;border:1px solid #d4d9e0;border-radius:10px;padding:24px">
<p style="margin:0 0 12px;color:#5b6470;font-size:14px;font-weight:600">${escapeHtml(title)}</p>
${body}
</div>
</body>
</html>
`;
  return { subject: clean(subject), text, html };
}

export function verificationMail(o: { appTitle: string; email: string; link: string; ttlMs: number }): Rendered {
  const title = clean(o.appTitle);
  return render(
    o.appTitle,
    `Confirm your email address for ${title}`,
    [
      `Please confirm that ${o.email} is your address for ${title}. Open this link within ${humanDuration(o.ttlMs)}:`,
      '{link}',
      `If you did not sign up for ${title}, ignore this message: nothing changes without the link.`,
    ],
    { url: o.link, label: 'Confirm email address' },
  );
}

export function resetMail(o: { appTitle: string; email: string; link: string; ttlMs: number }): Rendered {
  const title = clean(o.appTitle);
  return render(
    o.appTitle,
    `Reset your password for ${title}`,
    [
      `Someone asked to reset the password of the ${title} account for ${o.email}. If it was you, open this link within ${humanDuration(o.ttlMs)} to choose a new password:`,
      '{link}',
      'The link works once. If you did not ask for it, ignore this message: your password stays as it is.',
    ],
    { url: o.link, label: 'Choose a new password' },
  );
}

export function signInLinkMail(o: { appTitle: string; email: string; link: string; ttlMs: number }): Rendered {
  const title = clean(o.appTitle);
  return render(
    o.appTitle,
    `Your sign-in link for ${title}`,
    [
      `Someone asked for a link to sign in to the ${title} account for ${o.email}. If it was you, open this link within ${humanDuration(o.ttlMs)}:`,
      '{link}',
      'The link works once. If you did not ask for it, ignore this message: nobody is signed in without it.',
    ],
    { url: o.link, label: 'Sign in' },
  );
}

export function passwordChangedMail(o: {
  appTitle: string;
  email: string;
  at: number;
  how: 'reset' | 'changed';
  forgotUrl: string;
}): Rendered {
  const title = clean(o.appTitle);
  const when = new Date(o.at)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
  return render(o.appTitle, `Your password for ${title} was changed`, [
    `The password of the ${title} account for ${o.email} was ${o.how === 'reset' ? 'reset with a link sent to this address' : 'changed'} on ${when}. ${o.how === 'reset' ? 'Every session was' : 'Every other session was'} signed out.`,
    `If that was not you, choose a new password at once (${o.forgotUrl}) and tell the administrator of ${title}.`,
  ]);
}

const utc = (at: number) =>
  new Date(at)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');

/** To the new address of a change (accounts/email-change.ts): the link that makes it the account's. */
export function emailChangeMail(o: {
  appTitle: string;
  oldEmail: string;
  newEmail: string;
  link: string;
  ttlMs: number;
}): Rendered {
  const title = clean(o.appTitle);
  return render(
    o.appTitle,
    `Confirm your new email address for ${title}`,
    [
      `Someone signed in to the ${title} account of ${o.oldEmail} asked to change its address to ${o.newEmail}. If it was you, open this link within ${humanDuration(o.ttlMs)} to confirm:`,
      '{link}',
      `Until then the account keeps ${o.oldEmail}. If you did not ask for this, ignore this message: nothing changes without the link.`,
    ],
    { url: o.link, label: 'Confirm new address' },
  );
}

/** To the new address of a change when it already belongs to another account: nothing else tells the requester. */
export function emailInUseMail(o: { appTitle: string; newEmail: string; loginUrl: string; at: number }): Rendered {
  const title = clean(o.appTitle);
  return render(o.appTitle, `Your email address and ${title}`, [
    `On ${utc(o.at)} someone asked to make ${o.newEmail} the address of a ${title} account. There is an account with this address already, so nothing changed.`,
    `If it was you, sign in with this address instead (${o.loginUrl}). If not, ignore this message.`,
  ]);
}

/** To the old address: a change was asked for, then (`done`) made. */
export function emailChangeNoticeMail(o: {
  appTitle: string;
  oldEmail: string;
  newEmail: string;
  at: number;
  done: boolean;
  forgotUrl: string;
}): Rendered {
  const title = clean(o.appTitle);
  return render(
    o.appTitle,
    o.done ? `The email address of your ${title} account was changed` : `A change of your email address for ${title}`,
    [
      o.done
        ? `On ${utc(o.at)} the address of the ${title} account of ${o.oldEmail} was changed to ${o.newEmail}, confirmed with the link sent there. Messages about the account now go to ${o.newEmail}.`
        : `On ${utc(o.at)} someone signed in to the ${title} account of ${o.oldEmail} asked to change its address to ${o.newEmail}. Nothing changes until the link sent to ${o.newEmail} is opened; until then the account keeps this address.`,
      `If that was not you, choose a new password at once (${o.forgotUrl}) and tell the administrator of ${title}.`,
    ],
  );
}

/** To the address of an account that was just deleted (accounts/deletion.ts, gatehouse users delete). */
export function accountDeletedMail(o: {
  appTitle: string;
  email: string;
  at: number;
  by: 'user' | 'operator';
}): Rendered {
  const title = clean(o.appTitle);
  return render(o.appTitle, `Your ${title} account was deleted`, [
    o.by === 'user'
      ? `On ${utc(o.at)} the ${title} account of ${o.email} was deleted from its account page, after its owner confirmed who they were. Every session and program login of it has ended; linked sign-in providers, second factors and pending links are gone with it.`
      : `On ${utc(o.at)} an administrator of ${title} deleted the account of ${o.email}. Every session and program login of it has ended.`,
    `This cannot be undone. You can register again with this address; it will be a new account. If you did not ask for this, tell the administrator of ${title}.`,
  ]);
}

/** A sign-in from a browser the account had not signed in with before (accounts/sign-in-notices.ts). */
export function newSignInMail(o: {
  appTitle: string;
  email: string;
  at: number;
  device: string;
  ip: string;
  method: string;
  accountUrl: string;
  forgotUrl: string;
}): Rendered {
  const title = clean(o.appTitle);
  return render(o.appTitle, `New sign-in to your ${title} account`, [
    `On ${utc(o.at)} the ${title} account of ${o.email} was signed in to from a browser it had not signed in with before: ${clean(o.device)}, from the address ${o.ip}, with ${o.method}.`,
    'If that was you, there is nothing to do.',
    `If it was not, end that session on your account page (${o.accountUrl}), choose a new password (${o.forgotUrl}) and tell the administrator of ${title}.`,
  ]);
}

/** An operator's invitation (gatehouse users invite): the link that sets a password and signs in. */
export function invitationMail(o: { appTitle: string; email: string; link: string; ttlMs: number }): Rendered {
  const title = clean(o.appTitle);
  return render(
    o.appTitle,
    `You are invited to ${title}`,
    [
      `You are invited to ${title}, with the account ${o.email}. Open this link within ${humanDuration(o.ttlMs)} to choose your password and sign in:`,
      '{link}',
      'The link works once. If you did not expect this invitation, ignore this message.',
    ],
    { url: o.link, label: 'Accept the invitation' },
  );
}

export { consentPath } from '../oauth/helpers.ts';
export { csrfOf } from '../helpers/providers.ts';

// The shape of the addresses the coordinator accepts, shared by its settings (--groups, --peers)
// and by the meta state machine, which checks the same rules when a command is applied. Ids follow
// ID_PATTERN of @concord/runtime, as in every role.

/** A host name, an IPv4 address or a bracketed IPv6 address such as [::1]. */
const HOST_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$/;

/** Why `address` cannot be dialled, or undefined if it is a usable host:port (port 1 to 65535). */
export function addressProblem(address: string): string | undefined {
  const colon = address.lastIndexOf(':');
  if (address === '') return 'every replica address must be host:port, none may be empty';
  if (colon <= 0) return 'replica address must be host:port';
  const host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (!HOST_PATTERN.test(host)) return 'replica address must start with a host name, an IPv4 address or a bracketed IPv6 address';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) return 'replica port must be from 1 to 65535';
  return undefined;
}

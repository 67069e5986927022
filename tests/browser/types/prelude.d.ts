// What the README's examples use without defining it.
import type { Payload } from 'station-link';
declare global {
  const badge: HTMLElement;
  function render(kind: string, payload: Payload): void;
  function show(kind: string, payload: Payload): void;
  function replaceAll(state: { [kind: string]: Payload }): void;
  function warn(text: string): void;
}

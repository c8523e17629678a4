// No default export and no scenario naming another function.
export function other() {}

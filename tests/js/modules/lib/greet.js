import { punctuation } from "../punctuation.mjs";
export const greet = (name) => `hello ${name}${punctuation}`;

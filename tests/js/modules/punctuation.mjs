export const punctuation = "!";

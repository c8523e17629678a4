// Init code that throws.
const config = JSON.parse("{not json");
export default function () {}

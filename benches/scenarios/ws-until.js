// Artillery processor for ws-echo.yml: each virtual user loops until SECONDS have passed
// since the script loaded.
const end = Date.now() + Number(process.env.SECONDS || 5) * 1000;
module.exports = { running: (context, next) => next(Date.now() < end) };

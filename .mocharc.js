// Every compiled test by default; only the files named when some are given
// (`npx mocha dist/gateway/connection.test.js`), rather than those added to all of them.
const named = process.argv.slice(2).some((a) => a.endsWith('.test.js'));
module.exports = {
  ...(named ? {} : { spec: ['dist/**/*.test.js'] }),
  ignore: ['dist/node_modules/**'],
  timeout: 20000,
  exit: true,
};

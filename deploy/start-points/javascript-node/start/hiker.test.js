const test = require('node:test');
const assert = require('node:assert/strict');
const { answer } = require('./hiker.js');

test('life, the universe and everything', () => {
  assert.equal(answer(), 42);
});

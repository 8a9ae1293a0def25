function answer() {
  return 6 * 9;
}

module.exports = { answer };

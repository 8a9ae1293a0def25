require 'minitest/autorun'
require_relative 'hiker'

class TestHiker < Minitest::Test
  def test_life_the_universe_and_everything
    assert_equal 42, answer
  end
end

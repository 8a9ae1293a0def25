# Evaluates red-amber-green lambdas: one JSON request a line on stdin,
#   {"id": n, "source": "lambda { |stdout, stderr, status| ... }", "stdout": ..., "stderr": ..., "status": 0}
# one JSON answer a line on stdout, {"id": n, "colour": "red"} or {"id": n, "fault": "why"}.
# Each lambda runs in a child process of its own, as nobody, with no network, bounded in
# CPU, memory and wall-clock time: it is the caller's code.
require 'json'

$stdout.sync = true
COLOURS = %w[red amber green].freeze
WALL_SECONDS = 3

def evaluate(request)
  # An empty binding: the lambda sees nothing of this program.
  fn = Object.new.instance_eval { binding }.eval(request['source'])
  colour = fn.call(request['stdout'], request['stderr'], Integer(request['status'])).to_s
  COLOURS.include?(colour) ? { 'colour' => colour } : { 'fault' => "illegal colour #{colour.inspect}; must be one of red, amber, green" }
rescue Exception => e # the lambda may raise anything, SyntaxError and SystemExit included
  { 'fault' => "#{e.class}: #{e.message}" }
end

$stdin.each_line do |line|
  request = JSON.parse(line)
  reader, writer = IO.pipe
  pid = fork do
    reader.close
    Process.setrlimit(:CPU, 2)
    Process.setrlimit(:AS, 512 * 1024 * 1024)
    writer.write(JSON.generate(evaluate(request)))
    writer.close
    exit!(0)
  end
  writer.close
  answer = nil
  if IO.select([reader], nil, nil, WALL_SECONDS)
    answer = reader.read
  end
  reader.close
  Process.kill('KILL', pid) rescue nil
  Process.wait(pid) rescue nil
  result = answer.to_s.empty? ? { 'fault' => "the lambda gave no colour within #{WALL_SECONDS} s" } : JSON.parse(answer)
  puts JSON.generate({ 'id' => request['id'] }.merge(result))
rescue JSON::ParserError => e
  puts JSON.generate({ 'id' => nil, 'fault' => "bad request: #{e.message}" })
end

JUNIT=/usr/share/java/junit-platform-console-standalone.jar
# Classes go to the avatar's home, not the sandbox, and start afresh each run.
CLASSES=$HOME/classes
rm -rf "$CLASSES"
# Short runs start fastest with the serial GC and only the first JIT compiler; no
# perf data, which the JVM would write to the kata's shared /tmp.
javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -J-XX:-UsePerfData -encoding UTF-8 -d "$CLASSES" -cp "$JUNIT" *.java \
  && java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -jar "$JUNIT" --class-path "$CLASSES" --scan-class-path \
       --disable-banner --details=tree --disable-ansi-colors

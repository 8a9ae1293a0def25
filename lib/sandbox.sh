# The runner's side inside a kata container. Node passes this text to `bash -c` as
# root, with the command and its arguments as argv; no user data is ever part of it.
# Root only edits /etc/passwd and /etc/group and starts processes: every file in a
# sandbox or home is read and written as the avatar (setpriv), so the kernel, not
# this script, keeps an avatar inside what it owns, whatever symlinks it planted.
#
# Answers go to stdout as records: kind NUL name NUL flag NUL length NUL <length bytes>.
set -uo pipefail
umask 077

readonly STATE=/run/cyber-dojo   # root-only tmpfs: locks and per-run work dirs
readonly TEXT_LIMIT=51200        # bytes of stdout, stderr and each returned file

emit() { printf '%s\0%s\0%s\0%s\0' "$1" "$2" "${3:-}" "${4:-0}"; }
emit_file() { # kind name flag path bytes
  emit "$1" "$2" "$3" "$5"
  head -c "$5" -- "$4"
}

emit_failure() { # what path holds: the reason, as text
  local size
  size=$(stat -c %s "$2")
  emit_file failed "$1" "" "$2" "$((size > TEXT_LIMIT ? TEXT_LIMIT : size))"
}

# fd 8 holds the avatar's lock: no process of the avatar may inherit it. Root cannot
# enter an avatar's 0700 sandbox (it has no DAC capabilities): the avatar does.
as_avatar() { setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@" 8>&-; }
# Runs one of this script's avatar commands (write_files, prepare, collect) as the avatar.
as_avatar_command() { as_avatar bash -c "$BASH_EXECUTION_STRING" cyber-dojo-sandbox "$1" "$avatar" "$uid" "${@:2}"; }

lock() { # one avatar command at a time, whichever runner process sends it
  exec 8>"$STATE/$1.lock"
  flock -w 60 8 || { emit busy "$1"; exit 0; }
}

avatar_entered() {
  local name password user group rest
  while IFS=: read -r name password user group rest; do
    [ "$name:$user:$group" = "$avatar:$uid:$uid" ] && return 0
  done </etc/passwd
  return 1
}

# Perl that becomes the avatar's uid without an execve (which a uid at its nproc
# limit could not do), kills all its processes with kill(-1) (atomic against fork,
# so a fork bomb cannot outrun it), and waits until the kernel has let go of them.
# It runs at nice -20 (root's CAP_SYS_NICE): 256 spinning processes of a fork bomb
# otherwise kept it waiting for the CPU for up to 2 s past the time limit.
readonly KILL_AVATAR='
  setpriority(0, 0, -20);
  sub kill_avatar {
    my $uid = shift;
    $( = $uid; $) = "$uid $uid";
    ($<, $>) = ($uid, $uid);
    die "cannot become uid $uid\n" unless $< == $uid && $> == $uid;
    sub owned { open(my $f, "<", "/proc/$_[0]/status") or return 0;
                while (<$f>) { return (split)[1] == $_[1] if /^Uid:/ } return 0 }
    for (1 .. 400) {
      kill "KILL", -1;
      opendir(my $proc, "/proc") or die "no /proc\n";
      return if !grep { /^\d+$/ && $_ != $$ && owned($_, $uid) } readdir $proc;
      select(undef, undef, undef, 0.005);
    }
    die "processes of uid $uid survive\n";
  }'

kill_avatar() {
  perl -e "$KILL_AVATAR"' kill_avatar($ARGV[0])' "$uid"
}

# A run's clock, started before cyber-dojo.sh and already resident when it is needed:
# at max_seconds, or as soon as its stdin closes, it kills the avatar's processes.
# Being resident, it needs no fork to act, however many of the avatar's processes spin.
# It is also the kata's memory guard for this run: the kernel has no memory account per
# uid, and its OOM killer takes the largest process, whoever owns it, so many small
# hogs of one avatar would get another's tests killed. When the kata's unreclaimable
# memory passes 90% of its limit, the avatar holding the most memory is the one killed.
# Exits 0 when asked, 124 at the time limit, 125 for memory.
reaper() {
  exec perl -e "$KILL_AVATAR"'
    my ($uid, $limit) = @ARGV;
    sub now { open(my $f, "<", "/proc/uptime") or die "no /proc/uptime\n"; (split " ", <$f>)[0] }
    sub read_value { for (@_) { open(my $f, "<", $_) or next; my $v = <$f>; chomp $v; return $v } undef }
    my $max = read_value("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes");
    my ($usage) = grep { -r } "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes";
    my ($stat) = grep { -r } "/sys/fs/cgroup/memory.stat", "/sys/fs/cgroup/memory/memory.stat";
    sub unreclaimable { # usage less the page cache of files, which the kernel frees first
      my $used = read_value($usage);
      open(my $f, "<", $stat) or return $used;
      my %bytes = map { (split)[0, 1] } <$f>;
      $used - ($bytes{total_active_file} // $bytes{active_file} // 0) - ($bytes{total_inactive_file} // $bytes{inactive_file} // 0);
    }
    sub largest { # the uid, root not counted, whose processes hold the most memory
      my %rss;
      opendir(my $proc, "/proc") or return -1;
      for my $pid (grep { /^\d+$/ } readdir $proc) {
        open(my $f, "<", "/proc/$pid/status") or next;
        my ($owner, $kb) = (0, 0);
        while (<$f>) { $owner = (split)[1] if /^Uid:/; $kb = (split)[1] if /^VmRSS:/ }
        $rss{$owner} += $kb if $owner;
      }
      (sort { $rss{$b} <=> $rss{$a} } keys %rss)[0] // -1;
    }
    my $guard = defined $max && $max =~ /^\d+$/ && $usage && $stat;
    my $stdin = ""; vec($stdin, 0, 1) = 1;
    my $end = now() + $limit;
    my $why = 0;
    for (;;) {
      my $left = $end - now();
      if ($left <= 0) { $why = 124; last }
      last if select(my $ready = $stdin, undef, undef, $left < 0.1 ? $left : 0.1) > 0;
      if ($guard && unreclaimable() > 0.9 * $max && largest() == $uid) { $why = 125; last }
    }
    kill_avatar($uid);
    exit $why;' "$uid" "$1"
}

read_oom_kills() { # sets variable $1 to the kata cgroup's count of OOM kills (v2 or v1)
  local -n count=$1
  local key value file
  count=0
  for file in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    [ -r "$file" ] || continue
    while read -r key value; do
      [ "$key" = oom_kill ] && { count=$value; return; }
    done <"$file"
  done
}

# Regular files of the sandbox (cwd) as: path NUL size:mtime:inode NUL, then an
# empty path, then `sha1  ./path` NUL for each file small enough to be returned.
# Files are always named ./path to tools: to them a file named - is stdin.
snapshot() {
  find . -mindepth 1 -type f -printf '%P\0%s:%T@:%i\0'
  printf '\0'
  find . -mindepth 1 -type f -size -$((TEXT_LIMIT + 1))c -exec sha1sum -z -- {} +
}

# Runs as the avatar, into its sandbox: deletes and writes the caller's files (stdin:
# names, each NUL-terminated, an empty name, then a tar). Exits 3 when tar could not
# write the files (its reasons on stderr).
write_files() {
  cd "/sandboxes/$avatar" || exit 2
  [ -d "/home/$avatar/tmp" ] || mkdir -p "/home/$avatar/tmp" || exit 2
  local -a deleted=()
  local name
  while IFS= read -r -d '' name && [ -n "$name" ]; do deleted+=("./$name"); done
  if ((${#deleted[@]})); then
    printf '%s\0' "${deleted[@]}" | xargs -0 rm -f -- 2>/dev/null
  fi
  tar -x --no-same-owner --no-same-permissions --touch || exit 3
}

# Runs as the avatar before the test: writes the caller's files, then prints the snapshot.
prepare() {
  write_files
  # What the avatar made unreadable is left out of both snapshots alike: not a failure.
  snapshot
  return 0
}

# Runs as the avatar, after all its processes are gone: compares its sandbox with the
# snapshot on stdin and emits the text files the run created or changed, and the
# names of those it deleted. Never follows a symlink, never returns one.
collect() {
  local max_files=$1 max_deleted=$2
  cd "/sandboxes/$avatar" || exit 2
  local -A before=() hash=() size=()
  local path stamp record
  while IFS= read -r -d '' path && [ -n "$path" ] && IFS= read -r -d '' stamp; do
    before[$path]=$stamp
  done
  while IFS= read -r -d '' record; do hash[${record:44}]=${record:0:40}; done

  local -a created=() changed=()
  while IFS= read -r -d '' path && IFS= read -r -d '' stamp; do
    size[$path]=${stamp%%:*}
    if [ -z "${before[$path]+set}" ]; then
      created+=("$path")
    else
      [ "${before[$path]}" != "$stamp" ] && ! same_content "$path" && changed+=("$path")
      unset 'before[$path]'
    fi
  done < <(find . -mindepth 1 -type f -printf '%P\0%s:%T@:%i\0')

  emit_texts created "$max_files" "${created[@]}"
  emit_texts changed "$max_files" "${changed[@]}"
  ((${#before[@]})) || return 0
  local count=0
  while IFS= read -r -d '' path; do
    ((count++ < max_deleted)) && emit deleted "$path"
  done < <(printf '%s\0' "${!before[@]}" | sort -z)
}

same_content() {
  local old=${hash[$1]:-} new
  [ -n "$old" ] || return 1
  new=$(sha1sum -- "./$1" 2>/dev/null) || return 1
  # sha1sum marks a line whose name it had to escape with a leading backslash.
  [ "${new:0:1}" = '\' ] && new=${new:1}
  [ "${new:0:40}" = "$old" ]
}

emit_texts() { # kind max paths...: the first max text files, in name order
  local kind=$1 max=$2 path bytes count=0
  shift 2
  (($#)) || return 0
  while IFS= read -r -d '' path; do
    ((count < max)) || return 0
    bytes=${size[$path]}
    # Text is what has no NUL byte in grep's first buffer; an empty file is text.
    if ((bytes == 0)) || LC_ALL=C grep -qI '' -- "./$path"; then
      emit_file "$kind" "$path" "$((bytes > TEXT_LIMIT))" "./$path" "$((bytes > TEXT_LIMIT ? TEXT_LIMIT : bytes))"
      ((count++))
    fi
  done < <(printf '%s\0' "$@" | sort -z)
}

# stdin: as write_files's, the starting files.
avatar_new() {
  lock "$avatar"
  if avatar_entered; then emit exists "$avatar"; return; fi
  (
    flock -w 60 9 || exit 1
    printf '%s:x:%s:%s::%s:/bin/bash\n' "$avatar" "$uid" "$uid" "/home/$avatar" >>/etc/passwd
    printf '%s:x:%s:\n' "$avatar" "$uid" >>/etc/group
  ) 9>"$STATE/passwd.lock" || { emit failed "passwd"; return; }
  if ! as_avatar_command write_files 2>"$STATE/$avatar.tar.err"; then
    emit_failure tar "$STATE/$avatar.tar.err"
    return
  fi
  emit ok "$avatar"
}

avatar_old() {
  lock "$avatar"
  if ! avatar_entered; then emit missing "$avatar"; return; fi
  kill_avatar || { emit failed kill; return; }
  local dir
  for dir in "/sandboxes/$avatar" "/home/$avatar"; do
    # Folders the avatar closed, even to itself, must be opened before their contents
    # can go; chmod -R opens each before it reads it, and resets the top to 0700.
    as_avatar chmod -R u=rwx,go= -- "$dir" </dev/null
    as_avatar find "$dir" -mindepth 1 -delete </dev/null
  done
  # What it left in the kata's shared temporary folders goes too: its uid is reused.
  as_avatar find /tmp /var/tmp /dev/shm -mindepth 1 -user "$uid" -delete </dev/null 2>/dev/null
  (
    flock -w 60 9 || exit 1
    sed -i "/^$avatar:/d" /etc/passwd /etc/group
  ) 9>"$STATE/passwd.lock" || { emit failed passwd; return; }
  emit ok "$avatar"
}

avatar_exists() {
  if avatar_entered; then emit yes "$avatar"; else emit no "$avatar"; fi
}

# stdin: the names to delete, each NUL-terminated, then an empty name, then a tar of
# the files to write. Emits started, finished, (memory_guard,) oom_kills, stdout and
# stderr, then the run's text files.
run() {
  local max_seconds=$1 max_files=$2 max_deleted=$3
  lock "$avatar"
  if ! avatar_entered; then emit missing "$avatar"; return; fi
  # The avatar's lock makes this folder its run's alone.
  local work=$STATE/$avatar
  if [ ! -p "$work/err" ]; then
    mkdir -p "$work" && mkfifo "$work/out" "$work/err" || { emit failed work; return; }
  fi
  as_avatar_command prepare >"$work/before" 2>"$work/prepare.err"
  case $? in
    0) ;;
    3) emit_failure tar "$work/prepare.err"; return ;;
    *) emit_failure prepare "$work/prepare.err"; return ;;
  esac

  # Output is cut here, in the container: a flood never crosses the engine's socket.
  (head -c "$TEXT_LIMIT" >"$work/stdout"; exec wc -c >"$work/stdout.rest") <"$work/out" &
  local stdout_reader=$!
  (head -c "$TEXT_LIMIT" >"$work/stderr"; exec wc -c >"$work/stderr.rest") <"$work/err" &
  local stderr_reader=$!

  local ooms_before ooms_after started ended status clock reaper
  read_oom_kills ooms_before
  exec {clock}> >(reaper "$max_seconds" >/dev/null 2>"$work/kill.err")
  reaper=$!
  emit started "$avatar"
  started=$EPOCHREALTIME
  # cyber-dojo.sh, as the avatar, in its sandbox. It cannot signal this script, the
  # clock or the output readers, which are root's. Its oom_score_adj stays 0, the
  # floor an unprivileged process may set: no avatar can make itself a smaller target
  # than another.
  setpriv --reuid="$uid" --regid="$uid" --clear-groups -- \
    bash -c 'cd "$1" && exec bash ./cyber-dojo.sh' cyber-dojo "/sandboxes/$avatar" \
    >"$work/out" 2>"$work/err" </dev/null 8>&- {clock}>&- &
  wait $!
  status=$?
  ended=$EPOCHREALTIME
  exec {clock}>&-
  emit finished "$(((${ended/./} - ${started/./}) / 1000))" "$status"
  wait "$reaper"
  case $? in
    0 | 124) ;;
    125) emit memory_guard "$avatar" ;;
    *) kill_avatar 2>>"$work/kill.err" || emit_failure kill "$work/kill.err" ;;
  esac
  wait "$stdout_reader" "$stderr_reader"
  read_oom_kills ooms_after
  emit oom_kills "$((ooms_after - ooms_before))"
  local rest sizes
  sizes=($(stat -c %s "$work/stdout" "$work/stderr"))
  read -r rest <"$work/stdout.rest"
  emit_file stdout "" "$((rest > 0))" "$work/stdout" "${sizes[0]}"
  read -r rest <"$work/stderr.rest"
  emit_file stderr "" "$((rest > 0))" "$work/stderr" "${sizes[1]}"
  as_avatar_command collect "$max_files" "$max_deleted" <"$work/before"
}

# The host's watchdog: kills the avatar's processes when a run outlived its limit.
kill_all() {
  kill_avatar && emit ok "$avatar"
}

command=$1 avatar=$2 uid=$3
shift 3
case $command in
  avatar_new | avatar_old | avatar_exists | run | kill_all) "$command" "$@" ;;
  # Commands the script gives itself, as the avatar; never root's.
  write_files | prepare | collect) ((EUID == uid)) && "$command" "$@"; exit ;;
  *) echo "unknown command: $command" >&2; exit 2 ;;
esac
emit end "$command"

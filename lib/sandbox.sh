# The runner's side inside a kata container. Node passes this text to `bash -c` as
# root, with the command and its arguments as argv; no user data is ever part of it.
# Root only edits /etc/passwd and /etc/group and starts processes: every file in a
# sandbox or home is read and written as the avatar (setpriv), so the kernel, not
# this script, keeps an avatar inside what it owns, whatever symlinks it planted.
#
# Answers go to stdout as records: kind NUL name NUL flag NUL length NUL <length bytes>.
set -uo pipefail
umask 077
shopt -s nullglob

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

# fd 8 holds the avatar's lock: no process of the avatar may inherit it.
as_avatar() { setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@" 8>&-; }
# Root cannot enter an avatar's 0700 sandbox (no DAC capabilities): the avatar does.
in_sandbox() { as_avatar env -C "/sandboxes/$avatar" "$@"; }

lock() { # one avatar command at a time, whichever runner process sends it
  exec 8>"$STATE/$1.lock"
  flock -w 60 8 || { emit busy "$1"; exit 0; }
}

avatar_entered() { grep -q "^$avatar:x:$uid:$uid:" /etc/passwd; }

# Kills every process of the avatar and waits until the kernel has let go of them.
# kill(-1) as the uid is atomic against fork, so a fork bomb cannot outrun it. Perl
# switches uid without an execve, which a uid at its nproc limit could not do.
kill_avatar() {
  perl -e '
    my $uid = $ARGV[0];
    $( = $uid; $) = "$uid $uid";
    ($<, $>) = ($uid, $uid);
    die "cannot become uid $uid\n" unless $< == $uid && $> == $uid;
    sub owned { open(my $f, "<", "/proc/$_[0]/status") or return 0;
                while (<$f>) { return (split)[1] == $uid if /^Uid:/ } return 0 }
    for (1 .. 400) {
      kill "KILL", -1;
      opendir(my $proc, "/proc") or die "no /proc\n";
      exit 0 unless grep { /^\d+$/ && $_ != $$ && owned($_) } readdir $proc;
      select(undef, undef, undef, 0.005);
    }
    die "processes of uid $uid survive\n";
  ' "$uid"
}

oom_kills() { # the kata cgroup's count of OOM kills (cgroup v2 or v1)
  local key value file
  for file in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    [ -r "$file" ] || continue
    while read -r key value; do
      [ "$key" = oom_kill ] && { echo "$value"; return; }
    done <"$file"
  done
  echo 0
}

# Regular files of the sandbox (cwd) as: path NUL size:mtime:inode NUL, then an
# empty path, then `sha1  ./path` NUL for each file small enough to be returned.
# Files are always named ./path to tools: to them a file named - is stdin.
snapshot() {
  find . -mindepth 1 -type f -printf '%P\0%s:%T@:%i\0'
  printf '\0'
  find . -mindepth 1 -type f -size -$((TEXT_LIMIT + 1))c -printf './%P\0' | xargs -0 -r sha1sum -z --
}

# Runs as the avatar, after all its processes are gone: compares the sandbox with the
# snapshot on stdin and emits the text files the run created or changed, and the
# names of those it deleted. Never follows a symlink, never returns one.
collect() {
  local max_files=$1 max_deleted=$2
  local -A before=() hash=()
  local path stamp record size
  while IFS= read -r -d '' path && [ -n "$path" ] && IFS= read -r -d '' stamp; do
    before[$path]=$stamp
  done
  while IFS= read -r -d '' record; do hash[${record:44}]=${record:0:40}; done

  local -a created=() changed=()
  while IFS= read -r -d '' path && IFS= read -r -d '' stamp; do
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
  new=$(sha1sum -z -- "./$1" 2>/dev/null) || return 1
  [ "${new:0:40}" = "$old" ]
}

emit_texts() { # kind max paths...: the first max text files, in name order
  local kind=$1 max=$2 path size count=0
  shift 2
  (($#)) || return 0
  while IFS= read -r -d '' path; do
    ((count < max)) || return 0
    size=$(stat -c %s -- "./$path") || continue
    # Text is what has no NUL byte in grep's first buffer; an empty file is text.
    if ((size == 0)) || LC_ALL=C grep -qI '' -- "./$path"; then
      emit_file "$kind" "$path" "$((size > TEXT_LIMIT))" "./$path" "$((size > TEXT_LIMIT ? TEXT_LIMIT : size))"
      ((count++))
    fi
  done < <(printf '%s\0' "$@" | sort -z)
}

# stdin: starting files as a tar.
avatar_new() {
  lock "$avatar"
  if avatar_entered; then emit exists "$avatar"; return; fi
  (
    flock -w 60 9 || exit 1
    printf '%s:x:%s:%s::%s:/bin/bash\n' "$avatar" "$uid" "$uid" "/home/$avatar" >>/etc/passwd
    printf '%s:x:%s:\n' "$avatar" "$uid" >>/etc/group
  ) 9>"$STATE/passwd.lock" || { emit failed "passwd"; return; }
  as_avatar mkdir -p "/home/$avatar/tmp" </dev/null
  if ! in_sandbox tar -x --no-same-owner --no-same-permissions --touch 2>"$STATE/$avatar.tar.err"; then
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
# the files to write. Emits started, then finished, then the run's text files.
run() {
  local max_seconds=$1 max_files=$2 max_deleted=$3
  lock "$avatar"
  if ! avatar_entered; then emit missing "$avatar"; return; fi
  local -a deleted=()
  local name
  while IFS= read -r -d '' name && [ -n "$name" ]; do deleted+=("$name"); done

  work=$(mktemp -d "$STATE/run.XXXXXX") || { emit failed mktemp; return; }
  trap 'rm -rf "$work"' EXIT
  # A run that died half-way (a killed runner, a restarted engine) may have left some.
  kill_avatar 2>/dev/null
  as_avatar mkdir -p "/home/$avatar/tmp" </dev/null
  if ((${#deleted[@]})); then
    printf '%s\0' "${deleted[@]}" | in_sandbox xargs -0 rm -f -- 2>/dev/null
  fi
  if ! in_sandbox tar -x --no-same-owner --no-same-permissions --touch 2>"$work/tar.err"; then
    emit_failure tar "$work/tar.err"
    return
  fi
  in_sandbox bash -c "$(declare -f snapshot); TEXT_LIMIT=$TEXT_LIMIT snapshot" >"$work/before" </dev/null

  # Output is cut here, in the container: a flood never crosses the engine's socket.
  mkfifo "$work/out" "$work/err"
  { head -c "$TEXT_LIMIT" >"$work/stdout"; wc -c >"$work/stdout.rest"; } <"$work/out" &
  local stdout_reader=$!
  { head -c "$TEXT_LIMIT" >"$work/stderr"; wc -c >"$work/stderr.rest"; } <"$work/err" &
  local stderr_reader=$!

  local ooms_before started ended status
  ooms_before=$(oom_kills)
  emit started "$avatar"
  started=$EPOCHREALTIME
  # timeout runs as root, out of the avatar's reach. The avatar's processes are the
  # OOM killer's first choice, never the kata's init or its sleep; and they run at
  # nice 19, so that however many of them spin, the runner's own steps in this kata
  # (this script, other avatars' file I/O) still get the CPU. Within the kata only:
  # the kata's share of the host's CPU is its cgroup's, whatever the nice values.
  timeout -s KILL "$max_seconds" setpriv --reuid="$uid" --regid="$uid" --clear-groups -- \
    env -C "/sandboxes/$avatar" nice -n 19 bash -c 'echo 1000 >/proc/self/oom_score_adj; exec bash ./cyber-dojo.sh' \
    >"$work/out" 2>"$work/err" </dev/null 8>&-
  status=$?
  ended=$EPOCHREALTIME
  local micros=$((${ended/./} - ${started/./}))
  emit finished "$((micros / 1000))" "$status"
  kill_avatar 2>"$work/kill.err" || emit_failure kill "$work/kill.err"
  wait "$stdout_reader" "$stderr_reader"
  emit oom_kills "$(($(oom_kills) - ooms_before))"
  emit_file stdout "" "$(($(<"$work/stdout.rest") > 0))" "$work/stdout" "$(stat -c %s "$work/stdout")"
  emit_file stderr "" "$(($(<"$work/stderr.rest") > 0))" "$work/stderr" "$(stat -c %s "$work/stderr")"
  in_sandbox bash -c "$(declare -f collect same_content emit_texts emit emit_file); TEXT_LIMIT=$TEXT_LIMIT collect $max_files $max_deleted" <"$work/before"
}

# The host's watchdog: kills the avatar's processes when a run outlived its limit.
kill_all() {
  kill_avatar && emit ok "$avatar"
}

command=$1 avatar=$2 uid=$3
shift 3
case $command in
  avatar_new | avatar_old | avatar_exists | run | kill_all) "$command" "$@" ;;
  *) echo "unknown command: $command" >&2; exit 2 ;;
esac
emit end "$command"

#include "collectors/mountinfo.h"

#include "collectors/parse.h"

namespace nodeperf {
namespace {

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// A pod UID as the kubelet names its pod directory: 8-4-4-4-12 lowercase hex,
// or 32 hex for a static pod (the md5 the kubelet gives it).
bool is_pod_uid(std::string_view s) {
  if (s.size() == 32) {
    for (char c : s) {
      if (!is_lower_hex(c)) return false;
    }
    return true;
  }
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_lower_hex(s[i])) return false;
  }
  return true;
}

// The path split at '/', empty segments dropped.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view s = path.substr(0, slash);
    if (!s.empty()) out.push_back(s);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::optional<uint32_t> parse_u32(std::string_view s) {
  auto v = parse_u64(s);
  if (!v || *v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

}  // namespace

std::string unescape_mount_field(std::string_view field) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 4 <= field.size() &&
        octal(field[i + 1]) && octal(field[i + 2]) && octal(field[i + 3]) && field[i + 1] <= '3') {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<MountEntry> parse_mountinfo(std::string_view text, Problems& problems) {
  std::vector<MountEntry> out;
  Lines lines(text);
  std::string_view line;
  size_t number = 0;
  while (lines.next(line)) {
    ++number;
    if (trim(line).empty()) continue;
    auto bad = [&](std::string_view why) {
      problems.add("line " + std::to_string(number) + ": " + std::string(why) + " in '" +
                   std::string(line.substr(0, 80)) + "'");
    };
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    Fields fields(line);
    std::string_view id, parent, dev, root, mount_point, options, f;
    if (!fields.next(id) || !fields.next(parent) || !fields.next(dev) || !fields.next(root) ||
        !fields.next(mount_point) || !fields.next(options)) {
      bad("short line");
      continue;
    }
    MountEntry e;
    auto i = parse_u64(id), p = parse_u64(parent);
    size_t colon = dev.find(':');
    auto ma = colon == std::string_view::npos ? std::nullopt : parse_u32(dev.substr(0, colon));
    auto mi = colon == std::string_view::npos ? std::nullopt : parse_u32(dev.substr(colon + 1));
    if (!i || !p) {
      bad("bad mount ID");
      continue;
    }
    if (!ma || !mi) {
      bad("bad major:minor");
      continue;
    }
    bool separator = false;
    while (fields.next(f)) {
      if (f == "-") {
        separator = true;
        break;
      }
    }
    std::string_view fstype, source;
    if (!separator || !fields.next(fstype) || !fields.next(source)) {
      bad("no '- fstype source' part");
      continue;
    }
    // A namespace file bind-mounted somewhere (ip netns add, and a CNI
    // plugin's /run/netns/cni-... for every pod sandbox): its root is the
    // kernel's name for the namespace, "net:[4026532177]", not a path. It
    // holds no files, so it is never a volume: left out, not an error.
    if (fstype == "nsfs" && !root.starts_with('/')) continue;
    if (!root.starts_with('/') || !mount_point.starts_with('/')) {
      bad("root or mount point not absolute");
      continue;
    }
    e.id = *i;
    e.parent = *p;
    e.major = *ma;
    e.minor = *mi;
    e.root = unescape_mount_field(root);
    e.mount_point = unescape_mount_field(mount_point);
    e.fstype = unescape_mount_field(fstype);
    e.source = unescape_mount_field(source);
    out.push_back(std::move(e));
  }
  return out;
}

std::optional<KubeletVolumePath> parse_kubelet_volume_path(std::string_view mount_point) {
  std::vector<std::string_view> s = segments(mount_point);
  // Search from the end: the kubelet root can be anywhere, and a pod UID
  // never appears in it.
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == "pods" && i + 4 < s.size()) {
      // pods/<uid>/{volumes,volumeDevices}/<plugin>/<name>[/mount]
      std::string_view uid = s[i + 1], dir = s[i + 2], plugin = s[i + 3], name = s[i + 4];
      size_t rest = s.size() - (i + 5);
      if (!is_pod_uid(uid)) return std::nullopt;
      KubeletVolumePath v{KubeletVolumePath::Kind::filesystem, std::string(uid), std::string(plugin), std::string(name)};
      if (dir == "volumes") {
        bool csi = plugin == "kubernetes.io~csi";
        if ((csi && rest == 1 && s.back() == "mount") || (!csi && rest == 0)) return v;
        return std::nullopt;
      }
      if (dir == "volumeDevices" && rest == 0) {
        v.kind = KubeletVolumePath::Kind::block;
        return v;
      }
      return std::nullopt;
    }
    if (s[i] == "plugins" && i + 4 < s.size() && s[i + 1] == "kubernetes.io" && s[i + 2] == "csi" &&
        s[i + 3] == "volumeDevices") {
      // plugins/kubernetes.io/csi/volumeDevices/publish/<pv>/<uid>
      // plugins/kubernetes.io/csi/volumeDevices/<pv>/dev/<uid>
      size_t n = s.size() - (i + 4);
      std::string_view pv, uid;
      if (n == 3 && s[i + 4] == "publish") {
        pv = s[i + 5];
        uid = s[i + 6];
      } else if (n == 3 && s[i + 5] == "dev" && s[i + 4] != "staging" && s[i + 4] != "publish") {
        pv = s[i + 4];
        uid = s[i + 6];
      } else {
        return std::nullopt;
      }
      if (!is_pod_uid(uid)) return std::nullopt;
      return KubeletVolumePath{KubeletVolumePath::Kind::block, std::string(uid), "kubernetes.io~csi", std::string(pv)};
    }
  }
  return std::nullopt;
}

bool is_kubelet_mount(std::string_view mount_point) {
  if (parse_kubelet_volume_path(mount_point)) return true;
  std::vector<std::string_view> s = segments(mount_point);
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (s[i] == "pods" && is_pod_uid(s[i + 1]) && s[i + 2] == "volume-subpaths") return true;
    if (s[i] == "plugins" && s[i + 1] == "kubernetes.io") return true;
  }
  return false;
}

bool is_config_volume_plugin(std::string_view plugin) {
  return plugin == "kubernetes.io~secret" || plugin == "kubernetes.io~configmap" ||
         plugin == "kubernetes.io~projected" || plugin == "kubernetes.io~downward-api";
}

}  // namespace nodeperf

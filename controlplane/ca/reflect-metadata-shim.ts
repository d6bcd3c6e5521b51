/**
 * @peculiar/x509 2.x resolves its parts through tsyringe, which refuses to load
 * unless `Reflect.getMetadata` exists (normally from the reflect-metadata
 * package). tsyringe only stores and reads plain per-class metadata, so this
 * small map-backed version is enough and saves a dependency. Import it before
 * @peculiar/x509 (x509.ts does).
 */
type MetadataKey = string | symbol;
type Target = object;

const store = new WeakMap<Target, Map<MetadataKey, unknown>>();

interface ReflectMetadataApi {
  getMetadata?: (key: MetadataKey, target: Target) => unknown;
  getOwnMetadata?: (key: MetadataKey, target: Target) => unknown;
  defineMetadata?: (key: MetadataKey, value: unknown, target: Target) => void;
}

const reflect = Reflect as unknown as ReflectMetadataApi;

if (typeof reflect.getMetadata !== 'function') {
  reflect.getOwnMetadata = (key, target) => store.get(target)?.get(key);
  reflect.getMetadata = (key, target) => {
    for (let t: Target | null = target; t !== null; t = Object.getPrototypeOf(t) as Target | null) {
      const value = store.get(t)?.get(key);
      if (value !== undefined) return value;
    }
    return undefined;
  };
  reflect.defineMetadata = (key, value, target) => {
    let map = store.get(target);
    if (map === undefined) {
      map = new Map();
      store.set(target, map);
    }
    map.set(key, value);
  };
}

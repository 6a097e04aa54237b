// The wall display's map on a tile server (only when FUELTWIN_TILE_URL is set; otherwise wall.js draws
// the district with ECharts from the shipped boundary and needs no tiles). Leaflet (vendored, pinned) with
// the deployment's tiles, the district's outline and one circle per station coloured as on the ECharts
// map. Coordinates are used as they are: the stations and the boundary are GCJ-02, so the tiles must be
// GCJ-02 too (those of Chinese providers) or every marker sits ~500 m off.
// Markers are drawn on one canvas and restyled only when their colour changes, so a 1,000-station wall
// costs nothing between changes.
"use strict";

const FTTileMap = (() => {
  // Ray casting on the boundary's rings (lon, lat): whether a station lies on the district's land.
  function inRing(ring, x, y) {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i], [xj, yj] = ring[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  function inPolygon(rings, x, y) {
    if (!rings.length || !inRing(rings[0], x, y)) return false;
    return !rings.slice(1).some((hole) => inRing(hole, x, y));
  }
  function onLand(geojson, lon, lat) {
    for (const f of geojson.features) {
      const g = f.geometry;
      const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      if (polys.some((rings) => inPolygon(rings, lon, lat))) return true;
    }
    return false;
  }

  class TileMap {
    /** el: the map's element; boundary: GeoJSON of the district; tooltip(id) → HTML (escaped by the
     *  caller); onClick(id). */
    constructor(el, {tileUrl, attribution, boundary, tooltip, onClick}) {
      this.el = el;
      this.boundary = boundary;
      this.tooltip = tooltip;
      this.onClick = onClick;
      this.map = L.map(el, {zoomSnap: 0.25, attributionControl: true});
      this.tiles = L.tileLayer(tileUrl, {maxZoom: 18, attribution: attribution || ""}).addTo(this.map);
      this.outline = L.geoJSON(boundary, {interactive: false,
        style: {color: "#3aa0ff", weight: 2, fillColor: "#0e2440", fillOpacity: 0.25}}).addTo(this.map);
      this.map.fitBounds(this.outline.getBounds(), {padding: [8, 8]});
      this.renderer = L.canvas({padding: 0.2});
      this.markers = new Map();   // station id -> {marker, color, radius, lon, lat}
      this.labels = L.layerGroup().addTo(this.map);
      this.labelKey = "";
      this.tilesLoaded = 0;
      this.tiles.on("tileload", () => { this.tilesLoaded += 1; });
    }

    /** points: [{id, lon, lat, color, radius, rank}]; regions: [{name, value: [lon, lat]}]. */
    update(points, regions) {
      const raise = [];
      for (const p of points) {
        let m = this.markers.get(p.id);
        if (!m) {
          const marker = L.circleMarker([p.lat, p.lon], {renderer: this.renderer, radius: p.radius, weight: 1,
            color: "#06101f", fillColor: p.color, fillOpacity: 0.95});
          marker.bindTooltip(() => this.tooltip(p.id), {direction: "top", className: "ft-tip"});
          marker.on("click", () => this.onClick(p.id));
          marker.addTo(this.map);
          m = {marker, color: p.color, radius: p.radius, lon: p.lon, lat: p.lat};
          this.markers.set(p.id, m);
          if (p.rank) raise.push(marker);
        } else if (m.color !== p.color || m.radius !== p.radius) {
          m.marker.setStyle({fillColor: p.color});
          m.marker.setRadius(p.radius);
          m.color = p.color;
          m.radius = p.radius;
          if (p.rank) raise.push(m.marker);
        }
      }
      for (const marker of raise) marker.bringToFront();  // stations with alerts drawn on top
      const key = regions.map((r) => r.name).join("|");
      if (key !== this.labelKey) {
        this.labelKey = key;
        this.labels.clearLayers();
        for (const r of regions) {
          const html = document.createElement("span");
          html.textContent = r.name;
          L.marker([r.value[1], r.value[0]], {interactive: false, keyboard: false,
            icon: L.divIcon({className: "region-label", html, iconSize: null})}).addTo(this.labels);
        }
      }
    }

    resize() { this.map.invalidateSize(); }

    /** What the map shows, read back from Leaflet (tests, benchmark): pixel position in the map's
     *  element, colour, whether inside the element and on the district's land. */
    points() {
      const size = this.map.getSize();
      const out = [];
      for (const [id, m] of this.markers) {
        const pt = this.map.latLngToContainerPoint(m.marker.getLatLng());
        out.push({id, x: pt.x, y: pt.y, color: m.color,
                  inside: pt.x >= 0 && pt.y >= 0 && pt.x <= size.x && pt.y <= size.y,
                  onLand: onLand(this.boundary, m.lon, m.lat)});
      }
      return out;
    }
  }

  // Leaflet is loaded only by a wall that has a tile server: the default page asks nothing more.
  function load() {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/static/vendor/leaflet/leaflet.css";
    document.head.append(css);
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/static/vendor/leaflet/leaflet.js";
      s.onload = () => resolve();
      s.onerror = () => reject(new Error("leaflet.js did not load"));
      document.head.append(s);
    });
  }

  return {TileMap, load, onLand};
})();

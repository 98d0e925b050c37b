/* Sorting reads numbers from data-* attributes; filtering reads each row's text once. */
(function(){
var table=document.getElementById('samples');if(!table)return;
var tbody=table.tBodies[0],rows=Array.prototype.slice.call(tbody.rows);
rows.forEach(function(r){r._text=r.textContent.toLowerCase();});
function val(r,key,num){var v=r.getAttribute('data-'+key);if(!num)return v||'';
 return (v===null||v==='')?Infinity:parseFloat(v);}
table.querySelectorAll('th[data-key]').forEach(function(th){
 th.addEventListener('click',function(){
  var key=th.getAttribute('data-key'),num=th.getAttribute('data-type')==='num';
  var dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
  table.querySelectorAll('th[data-key]').forEach(function(h){h.removeAttribute('data-dir');});
  th.setAttribute('data-dir',dir);
  var sorted=rows.slice().sort(function(a,b){var x=val(a,key,num),y=val(b,key,num);
   var c=x<y?-1:x>y?1:0;if(dir==='desc')c=-c;return c||(val(a,'idx',true)-val(b,'idx',true));});
  var frag=document.createDocumentFragment();sorted.forEach(function(r){frag.appendChild(r);});
  tbody.appendChild(frag);});});
var q=document.getElementById('q'),boxes=document.querySelectorAll('input[data-only]');
var shown=document.getElementById('shown');
function apply(){var s=q.value.toLowerCase(),n=0;
 rows.forEach(function(r){var ok=!s||r._text.indexOf(s)>=0;
  boxes.forEach(function(b){if(b.checked&&r.getAttribute('data-'+b.getAttribute('data-only'))!=='1')ok=false;});
  r.hidden=!ok;if(ok)n++;});
 shown.textContent=n+' of '+rows.length+' rows shown';}
q.addEventListener('input',apply);boxes.forEach(function(b){b.addEventListener('change',apply);});apply();
})();
